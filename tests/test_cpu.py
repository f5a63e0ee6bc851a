"""Splitting the CPU into one JAX device per core (jaxscale.cpu): when, how, and with what results."""

import os
import subprocess
import sys

import pytest

from jaxscale import cpu


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environ)


def test_one_device_per_core_from_eight_cores():
    assert [cpu.devices_for(n) for n in (1, 2, 4, 7, 8, 16, 64)] == [1, 1, 1, 1, 8, 16, 64]
    assert cpu.cores() >= 1


def test_use_cpu_cores_sets_the_device_count_before_jax_starts():
    done = python("import jaxscale as js, jax\nn = js.use_cpu_cores(3)\nprint(n, jax.device_count())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "3"]


def test_use_cpu_cores_after_a_computation_says_to_call_it_first():
    done = python("import jax.numpy as jnp, jaxscale as js\njnp.ones(2).sum()\njs.use_cpu_cores(3)")
    assert done.returncode != 0
    assert "use_cpu_cores(3) must run before JAX's first computation" in done.stderr
    with pytest.raises(ValueError, match="n >= 1"):
        cpu.use_cpu_cores(0)


def test_xla_flags_device_count_is_left_alone():
    flags = "--xla_force_host_platform_device_count=4"
    done = python("import jaxscale as js, jax\nprint(js.use_cpu_cores(), jax.device_count())", XLA_FLAGS=flags)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "4"]


def test_bootstrap_draws_do_not_depend_on_the_cpu_split(tmp_path):
    code = (
        "import sys, numpy as np, jaxscale as js\n"
        "js.use_cpu_cores(int(sys.argv[1]))\n"
        "boot = js.bootstrap(js.datasets.chinchilla(), n_resamples=6, seed=2, lanes=96, chunk_size=3, progress=False)\n"
        "np.save(sys.argv[2], np.column_stack([boot.draws, boot.objective, boot.status]))\n"
    )
    import numpy as np

    out = {}
    for n in (1, 3):
        path = tmp_path / f"{n}.npy"
        done = subprocess.run(
            [sys.executable, "-c", code, str(n), str(path)], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        out[n] = np.load(path)
    np.testing.assert_array_equal(out[1], out[3])
