"""Peak resident memory of a large bootstrap on the Epoch points (run as a script, not a test).

Usage: ``python benchmarks/peak_memory.py [N_RESAMPLES]`` (default 100,000). Prints one JSON
line: resamples, wall time, failed fraction and the process's peak RSS (``ru_maxrss``), which
includes the Python interpreter, JAX, XLA's compiled kernels and the draws kept in memory.
"""

import json
import resource
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jaxscale as js  # noqa: E402


def main(n: int) -> None:
    runs = js.datasets.chinchilla()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    boot = js.bootstrap(runs, n_resamples=n, seed=0, progress=False)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "n_resamples": n,
                "wall_s": round(wall, 1),
                "failed_fraction": boot.failed_fraction,
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "rss_before_bootstrap_mib": round(baseline / 1024, 1),
                "draws_mib": round(boot.draws.nbytes / 2**20, 2),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
