"""How time grows: steady-state time (compilation excluded) as one quantity is varied.

Run: ``python -m pytest benchmarks/test_bench_scaling.py -q -s`` (``JAXSCALE_BENCH_QUICK=1``:
every size shrunk 10-20x, for a smoke run). Writes ``benchmarks/scaling.json`` (every
timing, and the machine) and ``benchmarks/scaling.png`` (log-log, one panel per series, with
a line of slope 1 for reference), and prints a markdown table.

Series (each point is its own benchmark; every kernel shape is compiled before it is timed,
and the compilations seen during the timed call are counted and kept):
* bootstrap on the 240 Epoch AI points, n resamples in {1000, 4000, 16000} (defaults: screen
  the 4,500-start grid, refine 8);
* bootstrap n=1000 with n_refine in {1, 2, 4, 8, 16, 32, 64};
* fit_groups on make_archive(G) (groups of 20-300 runs), G in {1000, 10000};
* fit_groups on 1000 groups of exactly P runs, P in {32, 64, 128, 256}.
bootstrap works in equal chunks of at most ``chunk_size`` resamples and makes each chunk's
resample weights with small jitted ops, so a bootstrap is warmed by one chunk plus a chunk of
the timed call's remainder: every shape the timed call uses.
fit_groups' kernel shapes depend on how many groups fall in each size bucket (and on how many
need a retry), so each fit_groups point is warmed by the identical call, whose time is kept
as the first call.
"""

import json
import os
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxscale as js
from benchmarks.groups_data import make_archive
from benchmarks.test_bench_bootstrap import _machine
from jaxscale import backends
from jaxscale.batches import balanced_chunk

QUICK = os.environ.get("JAXSCALE_BENCH_QUICK") == "1"
BOOT_N = [100, 400, 1600] if QUICK else [1000, 4000, 16000]
REFINE_N = 100 if QUICK else 1000
REFINE = [1, 4, 16, 64] if QUICK else [1, 2, 4, 8, 16, 32, 64]
GROUPS_G = [50, 500] if QUICK else [1000, 10000]
POINTS_G = 100 if QUICK else 1000
POINTS_P = [32, 64, 128, 256]
BOOT_CHUNK = backends.sizes().chunk_size
HERE = Path(__file__).resolve().parent
# Series: (the varied quantity, its axis label (filled from the document's settings), the unit
# of the per-item time).
SERIES = {
    "bootstrap_n": ("n", "bootstrap resamples n (Epoch points, n_refine 8)", "resample"),
    "bootstrap_n_refine": ("n_refine", "starts refined per resample (bootstrap n={refine_n})", "resample"),
    "fit_groups_G": ("G", "groups G (fit_groups, 20-300 runs each)", "group"),
    "fit_groups_P": ("P", "runs per group P (fit_groups, {points_groups} groups)", "group"),
}
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch.BACKEND_COMPILE_EVENT


class _CompileCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, event, duration, **kwargs):
        if event == COMPILE_EVENT:
            self.count += 1


@pytest.fixture(scope="module")
def results():
    """Collects every point; once the module is done, writes the JSON and the plot, prints the table."""
    counter = _CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    collected = {key: [] for key in SERIES}
    yield counter, collected
    jax.monitoring.unregister_event_duration_listener(counter)
    doc = {
        "machine": _machine(),
        "quick": QUICK,
        "settings": {"refine_n": REFINE_N, "points_groups": POINTS_G, "bootstrap_chunk": BOOT_CHUNK},
        "series": {k: v for k, v in collected.items() if v},
    }
    (HERE / "scaling.json").write_text(json.dumps(doc, indent=2) + "\n")
    _plot(doc, HERE / "scaling.png")
    print("\n\n" + _table(doc))


def _warm_n(n: int) -> int:
    """Resamples that compile every shape a bootstrap of ``n`` uses: one of its (equal) chunks
    and the remainder that its last chunk draws weights for."""
    chunk = balanced_chunk(n, BOOT_CHUNK)
    return chunk + n % chunk


def _timed(benchmark, counter, call, warm):
    """(result, warm-up seconds, steady seconds, compilations during the timed call)."""
    t0 = time.perf_counter()
    warm()
    warm_s = time.perf_counter() - t0
    before = counter.count
    out = benchmark.pedantic(call, rounds=1)
    return out, warm_s, benchmark.stats.stats.mean, counter.count - before


def _record(benchmark, collected, series, value, items, warm_s, steady, compiles, **extra):
    key, _, unit = SERIES[series]
    point = {
        key: value,
        "steady_s": round(steady, 4),
        f"ms_per_{unit}": round(1e3 * steady / items, 4),
        "warm_up_s": round(warm_s, 3),
        "compiles_during_timed_call": compiles,
        **extra,
    }
    collected[series].append(point)
    benchmark.extra_info.update({"machine": _machine(), "quick": QUICK, **point})
    print("\n" + json.dumps(point))


def _bootstrap_point(benchmark, results, series, value, n, **options):
    counter, collected = results
    runs = js.datasets.chinchilla()
    boot, warm_s, steady, compiles = _timed(
        benchmark,
        counter,
        lambda: js.bootstrap(runs, n_resamples=n, seed=0, progress=False, **options),
        lambda: js.bootstrap(runs, n_resamples=_warm_n(n), seed=1, progress=False, **options),
    )
    _record(
        benchmark,
        collected,
        series,
        value,
        n,
        warm_s,
        steady,
        compiles,
        failed_fraction=boot.failed_fraction,
        median_objective=float(np.median(boot.objective)),
    )
    assert boot.draws.shape[0] == n and boot.failed_fraction <= 0.01


@pytest.mark.benchmark(group="scaling-bootstrap-n")
@pytest.mark.parametrize("n", BOOT_N)
def test_bootstrap_resamples(benchmark, results, n):
    _bootstrap_point(benchmark, results, "bootstrap_n", n, n)


@pytest.mark.benchmark(group="scaling-bootstrap-n_refine")
@pytest.mark.parametrize("n_refine", REFINE)
def test_bootstrap_n_refine(benchmark, results, n_refine):
    _bootstrap_point(benchmark, results, "bootstrap_n_refine", n_refine, REFINE_N, n_refine=n_refine)


def _fit_groups_point(benchmark, results, series, value, df):
    counter, collected = results
    table, first_s, steady, compiles = _timed(
        benchmark, counter, lambda: js.fit_groups(df, by="group"), lambda: js.fit_groups(df, by="group")
    )
    n_groups = len(table)
    _record(
        benchmark,
        collected,
        series,
        value,
        n_groups,
        first_s,
        steady,
        compiles,
        n_groups=n_groups,
        n_runs=len(df),
        first_call_s=round(first_s, 3),
        converged_fraction=float(table["converged"].mean()),
    )
    assert table["converged"].mean() >= 0.99


@pytest.mark.benchmark(group="scaling-fit_groups-G")
@pytest.mark.parametrize("G", GROUPS_G)
def test_fit_groups_groups(benchmark, results, G):
    df, _ = make_archive(G, seed=0)
    _fit_groups_point(benchmark, results, "fit_groups_G", G, df)


@pytest.mark.benchmark(group="scaling-fit_groups-P")
@pytest.mark.parametrize("P", POINTS_P)
def test_fit_groups_points(benchmark, results, P):
    df, _ = make_archive(POINTS_G, min_points=P, max_points=P, seed=0)
    _fit_groups_point(benchmark, results, "fit_groups_P", P, df)


def _table(doc) -> str:
    lines = [
        f"Scaling, steady state ({doc['machine']}{', QUICK sizes' if doc['quick'] else ''})",
        "",
        "| series | varied | value | steady s | per item | compiles in timed call |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for series, points in doc["series"].items():
        key, _, unit = SERIES[series]
        for p in points:
            lines.append(
                f"| {series} | {key} | {p[key]} | {p['steady_s']:.3f} | {p[f'ms_per_{unit}']:.3f} ms/{unit} "
                f"| {p['compiles_during_timed_call']} |"
            )
    return "\n".join(lines)


def _plot(doc, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, (series, (key, label, _)) in zip(axes.flat, SERIES.items(), strict=True):
        points = doc["series"].get(series, [])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label.format(**doc["settings"]))
        ax.set_ylabel("steady-state time (s)")
        ax.set_title(series)
        ax.grid(True, which="both", alpha=0.3)
        if not points:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            continue
        x = np.array([p[key] for p in points], float)
        y = np.array([p["steady_s"] for p in points])
        ax.plot(x, y, "o-", color="C0", label="measured")
        for xi, yi in zip(x, y, strict=True):
            ax.annotate(f"{yi:.3g} s", (xi, yi), textcoords="offset points", xytext=(5, -11), fontsize=8)
        ref = y[0] * x / x[0]  # slope 1 through the first point: time proportional to the quantity
        ax.plot(x, ref, "--", color="grey", label="slope 1 (proportional)")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.08, y=0.12)
        ax.legend(loc="upper left", fontsize=8)
    quick = " — QUICK smoke-run sizes, not results" if doc["quick"] else ""
    fig.suptitle(f"jaxscale scaling, compilation excluded{quick}\n{doc['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
