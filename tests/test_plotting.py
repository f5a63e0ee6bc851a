"""Plots on real data (Chinchilla runs, Porian et al.'s isoFLOPs): the artists drawn, counted and checked."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection  # noqa: E402

import jaxscale as js  # noqa: E402
from jaxscale.plotting import plot_bootstrap, plot_fit, plot_frontier, plot_isoflop, save_figure  # noqa: E402

PORIAN = Path(__file__).parent / "fixtures" / "porian2024_isoflops" / "isoflop_points.csv"
TUNED = {"dataset": "rw", "experiment": "Optimizer tuning (no decay)"}  # 121 runs, 12 budgets, no warnings
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def runs():
    return js.datasets.chinchilla()


@pytest.fixture(scope="module")
def boot(runs):
    return js.bootstrap(runs, law="chinchilla", n_resamples=16, seed=0)


@pytest.fixture(scope="module")
def result(runs, boot):
    return js.fit(runs, law="chinchilla")  # compiled already by the bootstrap's point fit


@pytest.fixture(scope="module")
def porian():
    return pd.read_csv(PORIAN)


def by_gid(ax, gid, kind="lines"):
    return [a for a in getattr(ax, kind) if a.get_gid() == gid]


def assert_png(path):
    data = Path(path).read_bytes()
    assert len(data) > 1000 and data[:8] == PNG


def test_fit_along_iso_compute_lines(runs, result, tmp_path):
    ax, rax = plot_fit(result, runs, curves=6)
    assert ax.get_xscale() == rax.get_xscale() == "log"
    (points,) = by_gid(ax, "runs", "collections")
    assert isinstance(points, PathCollection)
    np.testing.assert_array_equal(points.get_offsets(), np.column_stack([runs.x[:, 0], runs.y]))  # 240 runs
    curves = by_gid(ax, "curve")
    assert len(curves) == 6  # the Chinchilla runs fill all 6 log-spaced bins of C = 6ND
    # Each run is coloured like its bin's curve: 6 colours in all, the curves' colours.
    run_colors = {tuple(np.round(c, 6)) for c in points.get_facecolors()[:, :3]}
    assert run_colors == {tuple(np.round(matplotlib.colors.to_rgb(c.get_color()), 6)) for c in curves}
    (resid,) = by_gid(rax, "residuals", "collections")
    expected = np.log(runs.y) - np.log(result.predict(N=runs.x[:, 0], D=runs.x[:, 1]))
    np.testing.assert_allclose(resid.get_offsets()[:, 1], expected, rtol=0, atol=1e-12)
    assert len(ax.get_legend().get_texts()) == 6
    assert_png(save_figure((ax, rax), tmp_path / "fit.png"))


def test_fit_curves_at_given_budgets_lie_on_the_law(runs, result):
    budgets = [1e19, 1e20, 1e21]
    for x in ("N", "D"):
        ax, rax = plot_fit(result, runs, x=x, curves=budgets)
        curves = by_gid(ax, "curve")
        assert len(curves) == 3 and ax.get_xlabel() == "" and f"${x}$" in rax.get_xlabel()  # shared x axis
        for c, line in zip(budgets, curves, strict=True):
            v, loss = line.get_xdata(), line.get_ydata()
            other = c / (6 * v)  # along C = 6ND
            at = {"N": v, "D": other} if x == "N" else {"N": other, "D": v}
            np.testing.assert_allclose(loss, result.predict(**at), rtol=1e-12)


def test_fit_with_tokens_held_fixed_and_no_residuals(runs, result):
    (ax,) = plot_fit(result, runs, x="N", hold="D", curves=[1e10, 1e11], residuals=False)
    assert len(ax.figure.axes) == 1
    curves = by_gid(ax, "curve")
    assert len(curves) == 2
    for d, line in zip([1e10, 1e11], curves, strict=True):
        n = line.get_xdata()
        np.testing.assert_allclose(line.get_ydata(), result.predict(N=n, D=np.full_like(n, d)), rtol=1e-12)
    assert "tokens" in ax.get_legend().get_title().get_text()


def test_fit_of_a_one_input_law(porian):
    # Real 1-input data: the loss at each budget's isoFLOP minimum vs compute (Porian et al.).
    table = js.isoflop(
        porian[(porian["dataset"] == "rw") & (porian["experiment"] == TUNED["experiment"])], n_resamples=0
    )
    budgets = table.budgets[0]
    runs = js.Runs.from_arrays({"C": [b["compute"] for b in budgets]}, [b["loss"] for b in budgets])
    res = js.fit(runs, law="power")
    ax, rax = plot_fit(res, runs)
    assert len(by_gid(ax, "curve")) == 1
    assert len(by_gid(ax, "runs", "collections")[0].get_offsets()) == 12 == runs.n_points
    assert rax.get_xlabel() == "compute $C$ (FLOPs)" and ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="hold= needs two inputs"):
        plot_fit(res, runs, hold="D")


def test_fit_rejects_bad_arguments(runs, result):
    with pytest.raises(ValueError, match="x must be one of"):
        plot_fit(result, runs, x="U")
    with pytest.raises(ValueError, match="hold must be one of"):
        plot_fit(result, runs, hold="N")
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="expected 2 axes"):
        plot_fit(result, runs, axes=ax)


def test_isoflop_profiles_of_a_porian_configuration(porian, tmp_path):
    picked = porian[(porian["dataset"] == TUNED["dataset"]) & (porian["experiment"] == TUNED["experiment"])]
    table = js.isoflop(picked, n_resamples=0)
    ax = plot_isoflop(porian, group=TUNED)
    assert ax.get_xscale() == "log" and len(ax.figure.axes) == 2  # the plot and its colour bar
    (points,) = by_gid(ax, "runs", "collections")
    assert len(points.get_offsets()) == len(picked) == 121
    parabolas = by_gid(ax, "parabola")
    assert len(parabolas) == table["n_budgets"][0] == 12
    (minima,) = by_gid(ax, "minima", "collections")
    reported = np.array([[b["N_opt"], b["loss"]] for b in table.budgets[0]])
    np.testing.assert_allclose(minima.get_offsets(), reported, rtol=1e-12)
    # Each parabola drawn is isoflop's own: refitting its samples gives isoflop's vertex.
    for line, (n_opt, loss) in zip(parabolas, reported, strict=True):
        c2, c1, c0 = np.polyfit(np.log(line.get_xdata()), line.get_ydata(), 2)
        assert np.exp(-c1 / (2 * c2)) == pytest.approx(n_opt, rel=1e-7)
        assert c0 - c1**2 / (4 * c2) == pytest.approx(loss, rel=1e-9)
    assert TUNED["experiment"] in ax.get_title()
    assert_png(save_figure(ax.figure, tmp_path / "isoflop.png"))


def test_isoflop_from_a_grouped_table_skips_what_isoflop_skipped(porian):
    with pytest.warns(js.IsoflopWarning):  # some of the 15 configurations have edge or skipped budgets
        table = js.isoflop(porian, by=["dataset", "experiment"], n_resamples=50, seed=0)
    group = {"dataset": "rw", "experiment": "Counting last layer and attention FLOPs"}
    row = table[(table["dataset"] == "rw") & (table["experiment"] == group["experiment"])].iloc[0]
    assert row["n_budgets"] == 11 and row["n_budgets_skipped"] == 1
    ax = plot_isoflop(porian, table, group=group)
    assert len(by_gid(ax, "runs", "collections")[0].get_offsets()) == 126  # every run of its 12 budgets
    assert len(by_gid(ax, "parabola")) == 11 == len(by_gid(ax, "minima", "collections")[0].get_offsets())
    assert f"{row['a_lower']:.3f}" in ax.get_title()  # the bootstrap interval of a
    with pytest.raises(ValueError, match="pick exactly one with group="):
        plot_isoflop(porian, table)
    # Kaplan et al.'s setup: some minima lie beyond the sizes sampled (isoflop warned above);
    # a dotted extension of the parabola leads to each of them, and only to them.
    kaplan = {"dataset": "rw", "experiment": "Reproducing Kaplan et al."}
    row = table[(table["dataset"] == "rw") & (table["experiment"] == kaplan["experiment"])].iloc[0]
    runs = porian[(porian["dataset"] == "rw") & (porian["experiment"] == kaplan["experiment"])]
    sizes = runs.groupby("flops")["params"].agg(["min", "max"])
    outside = sum(
        not sizes.loc[b["compute"], "min"] <= b["N_opt"] <= sizes.loc[b["compute"], "max"] for b in row.budgets
    )
    ax = plot_isoflop(porian, table, group=kaplan)
    assert len(by_gid(ax, "extrapolated")) == outside == 3 and len(by_gid(ax, "parabola")) == row["n_budgets"] == 11


def test_isoflop_window_draws_the_left_out_runs_hollow(porian):
    group = {"dataset": "owt2", "experiment": "Optimizer tuning (no decay)"}
    ax = plot_isoflop(porian, group=group, window=np.log(4), colorbar=False)
    inside = len(by_gid(ax, "runs", "collections")[0].get_offsets())
    outside = len(by_gid(ax, "excluded", "collections")[0].get_offsets())
    runs = porian[(porian["dataset"] == "owt2") & (porian["experiment"] == group["experiment"])]
    best = runs.loc[runs.groupby("flops")["loss"].idxmin()].set_index("flops")["params"]
    far = np.abs(np.log(runs["params"] / runs["flops"].map(best))) > np.log(4)  # more than 4x from the best size
    assert (inside, outside) == (len(runs) - far.sum(), far.sum()) == (87, 29)
    assert len(ax.figure.axes) == 1 and len(by_gid(ax, "parabola")) == 12


def test_frontier_with_bootstrap_band(boot, result, tmp_path):
    compute = np.logspace(20, 25, 20)
    table = js.frontier(boot, compute=compute)
    ax = plot_frontier(table)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    for q in ("N_opt", "D_opt"):
        (line,) = by_gid(ax, q)
        np.testing.assert_array_equal(line.get_xdata(), compute)
        np.testing.assert_array_equal(line.get_ydata(), table[q])
        (band,) = by_gid(ax, f"{q}_band", "collections")
        assert isinstance(band, PolyCollection)
        y = band.get_paths()[0].vertices[:, 1]
        assert y.min() == pytest.approx(table[f"{q}_lower"].min(), rel=1e-12)
        assert y.max() == pytest.approx(table[f"{q}_upper"].max(), rel=1e-12)
    assert len(ax.lines) == 2 and len(ax.get_legend().get_texts()) == 2
    ax = plot_frontier(js.frontier(result, compute=compute), quantities="tokens_per_param")
    assert not any(isinstance(c, PolyCollection) for c in ax.collections)  # a point fit has no band
    assert_png(save_figure(ax, tmp_path / "frontier.png"))


def test_bootstrap_histograms_mark_the_interval(boot, tmp_path):
    names = ("alpha", "beta", "a", "b")
    axes = plot_bootstrap(boot, names, level=0.9)
    assert len(axes) == 4
    ci = boot.ci(0.9)
    for ax, name in zip(axes, names, strict=True):
        assert sum(p.get_height() for p in by_gid(ax, "draws", "patches")) == boot.ok.sum() == 16
        for gid, column in (("estimate", "estimate"), ("lower", "lower"), ("upper", "upper")):
            (line,) = by_gid(ax, gid)
            x0, x1 = line.get_xdata()
            assert abs(x0 - ci.loc[name, column]) <= 1e-12 and x0 == x1  # a vertical line at the value
    assert axes[0].get_xlabel() == "$\\alpha$" and axes[2].get_xlabel() == "$a$"
    with pytest.raises(ValueError, match="available"):
        plot_bootstrap(boot, "gamma")
    assert_png(save_figure(axes, tmp_path / "bootstrap.png"))


def test_posterior_trace_and_pairs_draw_every_chain_and_draw():
    pytest.importorskip("blackjax")
    from jaxscale.plotting_posterior import plot_pairs, plot_trace

    post = js.posterior(js.datasets.chinchilla(), chains=3, draws=60, warmup=60, seed=0)
    axs = plot_trace(post, ("E", "alpha", "sigma"))
    chains = post.samples["alpha"].reshape(3, 60)
    np.testing.assert_array_equal(axs[1].lines[2].get_ydata(), chains[2])
    assert [line.get_gid() for line in axs[0].lines] == ["chain0", "chain1", "chain2"]
    assert f"{post.diagnostics['per_parameter']['alpha']['rhat']:.4f}" in axs[1].get_title()
    grid = plot_pairs(post, ("E", "alpha", "beta"), max_points=100)
    scatter = next(c for c in grid[2, 1].collections if c.get_gid() == "draws")
    assert scatter.get_offsets().shape == (100, 2) and not grid[0, 2].get_visible()
    assert grid[2, 1].get_xlabel() == "$\\alpha$" and grid[2, 0].get_ylabel() == "$\\beta$"
    fit = next(line for line in grid[2, 1].lines if line.get_gid() == "fit")
    assert fit.get_xydata()[0] == pytest.approx([post.point.params["alpha"], post.point.params["beta"]], rel=1e-12)
    with pytest.raises(ValueError, match=r"no draws of \['gamma'\]"):
        plot_trace(post, "gamma")
    plt.close("all")
