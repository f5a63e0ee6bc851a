"""Run scipy baselines with single-threaded BLAS (no extra dependency; ctypes on the loaded OpenBLAS).

scipy's L-BFGS-B calls BLAS/LAPACK on 5-element vectors every iteration. With OpenBLAS's
default thread pool (one thread per core) each call hands work to other threads, which can
make a fit several times slower and its time erratic when the machine is busy
(benchmarks/RESULTS.md, "How the figures are taken"). A fair baseline is the faster,
steadier one, as a user who knew would run it (e.g. with ``OPENBLAS_NUM_THREADS=1``); the
thread pool is restored afterwards.
"""

import contextlib
import ctypes

# (set, get) symbol pairs of the OpenBLAS builds that numpy and scipy wheels bundle, and plain OpenBLAS.
_SYMBOLS = [
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
]


def _openblas_controls() -> list[tuple]:
    """(set, get) functions of every OpenBLAS library loaded in this process."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:  # not Linux: leave the thread pools alone
        return []
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                controls.append((getattr(lib, set_name), getattr(lib, get_name)))
                break
    return controls


@contextlib.contextmanager
def single_threaded_blas():
    """Within the block every loaded OpenBLAS uses one thread; yields how many libraries were limited."""
    import scipy.optimize  # noqa: F401  (loads scipy's own OpenBLAS, so that it is limited too)

    controls = _openblas_controls()
    before = [get() for _, get in controls]
    for set_threads, _ in controls:
        set_threads(1)
    try:
        yield len(controls)
    finally:
        for (set_threads, _), n in zip(controls, before, strict=True):
            set_threads(n)
