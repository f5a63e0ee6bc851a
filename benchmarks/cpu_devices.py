"""The CPU split into 1, 2, 4, ... JAX devices (jaxscale.use_cpu_cores): bootstrap and fit_groups times.

Each device count runs in a fresh process (JAX fixes the count when it starts): a warm
4,000-resample Epoch bootstrap (the default, staged) and a warm fit_groups of 1,000 synthetic
groups, with the draws' and the table's checksums, which must not change with the count.
This is the data behind jaxscale.cpu.devices_for (one device per core from 8 cores).

Usage: python benchmarks/cpu_devices.py [max_devices]   (default: this machine's cores)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxscale import cpu  # noqa: E402  (imports no JAX)

JOB = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
import jaxscale as js
js.use_cpu_cores({n})
import jax
from benchmarks.groups_data import make_archive
runs = js.datasets.chinchilla()
js.bootstrap(runs, n_resamples=2000, seed=1, progress=False)
t = time.perf_counter()
boot = js.bootstrap(runs, n_resamples=4000, seed=0, progress=False)
tb = time.perf_counter() - t
df, _ = make_archive(1000, seed=0)
js.fit_groups(df.iloc[:20000], by="group")
t = time.perf_counter()
table = js.fit_groups(df, by="group")
tg = time.perf_counter() - t
print(f"{{jax.device_count():>3}} devices: bootstrap {{tb:7.2f}} s (draws sum {{np.nansum(boot.draws):.15g}}), "
      f"fit_groups {{tg:7.2f}} s (objective sum {{table['objective'].sum():.15g}})")
"""


def main() -> None:
    top = int(sys.argv[1]) if len(sys.argv) > 1 else cpu.cores()
    counts = sorted({1, top} | {2**k for k in range(1, 8) if 2**k < top})
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}
    for n in counts:
        done = subprocess.run(
            [sys.executable, "-c", JOB.format(root=str(ROOT), n=n)], env=env, text=True, capture_output=True
        )
        print(done.stdout.strip() if done.returncode == 0 else f"{n} devices: failed\n{done.stderr[-2000:]}")


if __name__ == "__main__":
    main()
