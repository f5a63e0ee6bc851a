"""Every CPU core: split the host CPU into several JAX devices, so that chunks shard over them.

One XLA:CPU device runs a batch's lockstep loop on about one core's worth of threads; the
runner shards chunks over all local devices (:mod:`jaxscale.batches`), so splitting the CPU
into one device per core puts every core to work, with the same results whatever the count.
On 2 cores one device already keeps both busy and two were slower; on 16 cores, 16 devices
were 5x one (benchmarks/RESULTS.md, "Devices"). Hence :func:`devices_for`.

JAX fixes its device count when its backend starts (the first computation), so
:func:`use_cpu_cores` must come first. The command line calls it itself; in Python, call it
right after ``import jaxscale``.

Example:
    >>> from jaxscale import cpu
    >>> cpu.devices_for(2), cpu.devices_for(16)
    (1, 16)
"""

from __future__ import annotations

import os

# Below this many cores the CPU stays one device (measured at 2 and 16 cores only).
MIN_CORES = 8
FORCED = "--xla_force_host_platform_device_count"  # XLA_FLAGS' own setting wins


def cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def devices_for(n_cores: int) -> int:
    """CPU devices for ``n_cores`` cores: one per core from :data:`MIN_CORES` cores, else 1."""
    return n_cores if n_cores >= MIN_CORES else 1


def use_cpu_cores(n: int | None = None) -> int:
    """Split the CPU into ``n`` JAX devices (default: :func:`devices_for` this machine's cores).

    Returns the number of CPU devices set. Does nothing where ``XLA_FLAGS`` already sets
    ``--xla_force_host_platform_device_count``. Raises ``RuntimeError`` once JAX's backend has
    started (any computation ran): call it first.
    """
    if FORCED in os.environ.get("XLA_FLAGS", ""):
        flag = os.environ["XLA_FLAGS"].split(FORCED + "=", 1)[1].split()[0]
        return int(flag)
    n = devices_for(cores()) if n is None else int(n)
    if n < 1:
        raise ValueError(f"use_cpu_cores needs n >= 1 devices; got {n}")
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as err:
        raise RuntimeError(
            f"use_cpu_cores({n}) must run before JAX's first computation (its backend has started: {err}). "
            "Call it right after import jaxscale"
        ) from None
    return n
