"""Command-line start-up: --help and input errors, against importing JAX, in one run.

Run: ``python -m pytest benchmarks/test_bench_cli.py -q -s``. Each command runs in a fresh
process 5 times; the minimum is kept (the machine's noise only adds). The baseline is
``python -c "import jax"``: what every command paid before JAX was imported lazily.
"""

import json
import shutil
import subprocess
import sys
import time

import pytest

from benchmarks.test_bench_bootstrap import _machine

RUNS = 5
EXE = shutil.which("jaxscale") or "jaxscale"  # the installed command, as users run it
COMMANDS = {
    "jaxscale --help": [EXE, "--help"],
    "jaxscale fit --help": [EXE, "fit", "--help"],
    "jaxscale fit missing.csv (input error)": [EXE, "fit", "missing.csv"],
    'python -c "import jax" (baseline)': [sys.executable, "-c", "import jax"],
}


def _best(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.benchmark(group="cli")
def test_cli_startup(benchmark):
    figures = {name: round(_best(cmd), 3) for name, cmd in COMMANDS.items()}
    benchmark.pedantic(lambda: None, rounds=1)
    baseline = figures['python -c "import jax" (baseline)']
    report = {"machine": _machine(), "seconds (min of 5)": figures}
    report["help_vs_import_jax"] = round(figures["jaxscale --help"] / baseline, 3)
    benchmark.extra_info.update(report)
    print("\n" + json.dumps(report, indent=2))
    assert all(t > 0 for t in figures.values())
