"""Frontier bands: 4,000 bootstrap draws x 1,000 budgets in one call (closed form and numeric).

Run: ``python -m pytest benchmarks/test_bench_frontier.py -q -s``
"""

import json
import time

import numpy as np

import jaxscale as js

N_DRAWS = 4000
N_BUDGETS = 1000


def test_frontier_bands(benchmark):
    boot = js.bootstrap(js.datasets.chinchilla(), n_resamples=N_DRAWS, seed=0, starts="warm", progress=False)
    budgets = np.logspace(18, 26, N_BUDGETS)
    closed = benchmark.pedantic(lambda: js.frontier(boot, budgets), rounds=3, warmup_rounds=1)
    closed_s = benchmark.stats.stats.mean

    sub = budgets[:: N_BUDGETS // 100]  # numeric: 4,000 draws x 100 budgets, then extrapolated
    t0 = time.perf_counter()
    js.frontier(boot, sub, method="numeric")
    numeric_first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    numeric = js.frontier(boot, sub, method="numeric")
    numeric_s = time.perf_counter() - t0

    figures = {
        "draws": int(boot.ok.sum()),
        "budgets": N_BUDGETS,
        "closed_form_bands_s": round(closed_s, 4),
        "numeric_bands_100_budgets_s": round(numeric_s, 3),
        "numeric_first_call_incl_compile_s": round(numeric_first_s, 3),
        "numeric_bands_1000_budgets_extrapolated_s": round(numeric_s * 10, 2),
    }
    benchmark.extra_info.update(figures)
    print("\n" + json.dumps(figures, indent=2))
    assert len(closed) == N_BUDGETS
    np.testing.assert_allclose(numeric["N_opt_upper"], closed["N_opt_upper"].to_numpy()[:: N_BUDGETS // 100], rtol=1e-6)
