"""One of the backend's sizes (``jaxscale.backends.Sizes``) at two or more values, same run.

Each value runs in a fresh process (so each first call compiles), in turn, and times
fit_groups on the synthetic archive (first call and a second, warm call) and the bootstrap of
the Epoch points (first and warm); it checks whether every value gives the same table and
draws (``calls_at_once`` and ``chunk_size`` must; ``lanes``, ``one_block`` and
``screen_batch`` change the compiled arithmetic, so only the optima must agree).

    python benchmarks/backend_sizes.py [groups=10000] [resamples=4000] [field=values]
    python benchmarks/backend_sizes.py 10000 4000 calls_at_once=1,2
    python benchmarks/backend_sizes.py 10000 4000 one_block=0,1      # on a GPU
    python benchmarks/backend_sizes.py 10000 4000 grouped_solver=bfgs,bfgs_mixed
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CHILD = r"""
import json, sys, time
import numpy as np
import jaxscale as js
from jaxscale import backends
from benchmarks.groups_data import make_archive
field, raw, out = sys.argv[1], sys.argv[2], sys.argv[5]
n_groups, n_resamples = (int(a) for a in sys.argv[3:5])
for name in ("CPU", "GPU"):
    sizes = getattr(backends, name)
    now = getattr(sizes, field)
    value = raw if isinstance(now, str) else type(now)(int(raw))  # a solver's name, or a number
    setattr(backends, name, sizes._replace(**{field: value}))
import jax
times = {"backend": jax.default_backend()}
df, _ = make_archive(n_groups, seed=0)
for name in ("groups_first", "groups_warm"):
    t = time.perf_counter()
    table = js.fit_groups(df, by="group")
    times[name] = time.perf_counter() - t
runs = js.datasets.chinchilla()
for name in ("boot_first", "boot_warm"):
    t = time.perf_counter()
    boot = js.bootstrap(runs, n_resamples=n_resamples, seed=0)
    times[name] = time.perf_counter() - t
table.to_pickle(out + ".pkl")
np.save(out + ".npy", boot.draws)
np.save(out + "_objective.npy", boot.objective)
print(json.dumps(times))
"""


def main(n_groups: int = 10_000, n_resamples: int = 4000, setting: str = "calls_at_once=1,2") -> None:
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp())
    field, values = setting.split("=")
    values = values.split(",")
    times = {}
    for v in values:
        run = subprocess.run(
            [sys.executable, "-c", CHILD, field, str(v), str(n_groups), str(n_resamples), str(tmp / str(v))],
            cwd=root,
            capture_output=True,
            text=True,
        )
        if run.returncode:
            raise SystemExit(f"{field}={v} failed:\n{run.stderr[-3000:]}")
        times[v] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{field}={v}: {times[v]}", flush=True)
    base = values[0]
    tables = {v: pd.read_pickle(tmp / f"{v}.pkl") for v in values}
    for key in ("groups_first", "groups_warm", "boot_first", "boot_warm"):
        print(
            key
            + ": "
            + ", ".join(f"{v}: {times[v][key]:.2f} s ({times[base][key] / times[v][key]:.2f}x)" for v in values)
        )
    for v in values[1:]:
        same = tables[v].equals(tables[base]) and np.array_equal(
            np.load(tmp / f"{v}.npy"), np.load(tmp / f"{base}.npy")
        )
        gap = np.max(np.abs(tables[v]["objective"] / tables[base]["objective"] - 1))
        boot_gap = np.max(np.abs(np.load(tmp / f"{v}_objective.npy") / np.load(tmp / f"{base}_objective.npy") - 1))
        print(
            f"{field}={v} against {base}: identical {same}; "
            f"objectives within {gap:.1e} (groups), {boot_gap:.1e} (bootstrap)"
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    setting = [a for a in args if "=" in a]
    numbers = [int(a) for a in args if "=" not in a]
    main(*numbers, *setting)
