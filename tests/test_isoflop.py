"""isoflop (Approach 2): a known law recovered, the vmapped path equal to a loop, Porian et al.'s data."""

import importlib
import json
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from jaxscale import isoflop_data
from tests.conftest import shared_file
from tests.test_cli import run

PORIAN = Path(__file__).parent / "fixtures" / "porian2024_isoflops" / "isoflop_points.csv"
# dataset + experiment label name Porian et al.'s 15 configurations (checked below against the
# six columns that describe them).
CONFIG = ["dataset", "experiment"]
DESCRIBED_BY = ["dataset", "hparams", "warmup", "decay", "param_count", "loss_split"]
KAPLAN, TUNED = "Reproducing Kaplan et al.", "Optimizer tuning (no decay)"
ISOFLOP_MODULE = importlib.import_module("jaxscale.isoflop")  # the package attribute is the function


def chinchilla_isoflops(E, A, B, alpha, beta, *, budgets, sizes=9, spread=1.5, noise=0.0, seed=0):
    """Runs on isoFLOP grids (C = 6ND) log-spaced around Chinchilla's analytic optimum."""
    rng = np.random.default_rng(seed)
    a = beta / (alpha + beta)
    g = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    rows = []
    for c in budgets:
        n = g * (c / 6) ** a * np.exp(np.linspace(-spread, spread, sizes))
        d = c / (6 * n)
        loss = (E + A / n**alpha + B / d**beta) * np.exp(noise * rng.standard_normal(sizes))
        rows.append(pd.DataFrame({"flops": c, "params": n, "loss": loss}))
    return pd.concat(rows, ignore_index=True)


def test_recovers_the_chinchilla_exponent():
    alpha, beta = 0.34, 0.37
    true_a = beta / (alpha + beta)  # N_opt ∝ C^(β/(α+β)) under C = 6ND
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, alpha, beta, budgets=np.logspace(18, 22, 9), noise=0.002)
    table = js.isoflop(df, n_resamples=1000, seed=1)
    row = table.iloc[0]
    assert row["n_budgets"] == 9 and row["n_budgets_skipped"] == 0 and row["n_points"] == 81
    assert abs(row["a"] - true_a) < 0.01
    assert row["a_lower"] <= true_a <= row["a_upper"]
    assert row["a_upper"] - row["a_lower"] < 0.05  # 0.2% noise: a tight interval
    # D* = C / (6 N*), so log D* = log C - log 6 - log N*: b = 1 - a, resample by resample.
    assert abs(row["a"] + row["b"] - 1) < 1e-12
    assert abs(row["a_lower"] + row["b_upper"] - 1) < 1e-12 and abs(row["a_upper"] + row["b_lower"] - 1) < 1e-12
    assert row["nonconvex_fraction"] < 0.01  # 9 sizes per budget: rarely < 3 distinct ones drawn


def test_noise_free_grids_give_the_exponent_exactly():
    # Along an isoFLOP line the Chinchilla loss has the same shape in log N − log N_opt at every
    # budget, so a grid symmetric about N_opt biases every vertex by the same factor: a is exact.
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=np.logspace(18, 22, 5))
    row = js.isoflop(df, n_resamples=0).iloc[0]
    assert abs(row["a"] - 0.37 / 0.71) < 1e-9
    assert np.isnan(row["a_lower"]) and np.isnan(row["nonconvex_fraction"])


def test_vertices_match_numpy_polyfit():
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=[1e19, 1e20, 1e21], sizes=7, noise=0.01)
    budgets = js.isoflop(df, n_resamples=0).iloc[0]["budgets"]
    for entry, (c, runs) in zip(budgets, df.groupby("flops"), strict=True):
        c2, c1, c0 = np.polyfit(np.log(runs["params"]), runs["loss"], 2)
        assert entry["compute"] == c
        assert entry["N_opt"] == pytest.approx(np.exp(-c1 / (2 * c2)), rel=1e-9)
        assert entry["loss"] == pytest.approx(c0 - c1**2 / (4 * c2), rel=1e-9)
        assert entry["D_opt"] == pytest.approx(c / (6 * entry["N_opt"]), rel=1e-12)


def test_weighted_vertices_match_numpy_polyfit():
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=[1e19, 1e20, 1e21], sizes=7, noise=0.01)
    # Down-weight runs far from the middle of each budget's range.
    df["w"] = np.exp(
        -np.abs(np.log(df["params"]) - df.groupby("flops")["params"].transform(lambda v: np.log(v).mean()))
    )
    weighted = js.isoflop(df, weights="w", n_resamples=200, seed=0)
    for entry, (c, runs) in zip(weighted.iloc[0]["budgets"], df.groupby("flops"), strict=True):
        assert entry["compute"] == c
        # polyfit's w multiplies the residuals, so least-squares weights are w**2.
        c2, c1, _ = np.polyfit(np.log(runs["params"]), runs["loss"], 2, w=np.sqrt(runs["w"]))
        assert entry["N_opt"] == pytest.approx(np.exp(-c1 / (2 * c2)), rel=1e-9)
    # Equal weights change nothing (the normal equations are scale-invariant).
    df["w"] = 3.0
    same = js.isoflop(df, weights="w", n_resamples=200, seed=0).iloc[0]
    plain = js.isoflop(df, n_resamples=200, seed=0).iloc[0]
    for col in ("a", "a_lower", "a_upper"):
        assert same[col] == pytest.approx(plain[col], rel=1e-10)
    df.loc[2, "w"] = 0.0
    with pytest.raises(ValueError, match=r"column 'w' has 1 non-positive values \(rows 2\)"):
        js.isoflop(df, weights="w")


def ragged_groups():
    """Three laws with different numbers of budgets and of sizes per budget (ragged padding)."""
    parts = []
    for name, (alpha, beta, n_budgets, sizes) in {
        "wide": (0.34, 0.28, 6, 7),
        "narrow": (0.30, 0.40, 9, 12),
        "short": (0.40, 0.35, 4, 5),
    }.items():
        df = chinchilla_isoflops(
            1.7, 450.0, 1500.0, alpha, beta, budgets=np.logspace(18, 21, n_budgets), sizes=sizes, noise=0.005, seed=3
        )
        parts.append(df.assign(law=name))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0)  # row order must not matter


@pytest.mark.filterwarnings("ignore:isoflop.*rest on degenerate resamples:jaxscale.IsoflopWarning")
def test_vmapped_groups_equal_a_python_loop():
    df = ragged_groups()
    table = js.isoflop(df, by="law", n_resamples=300, seed=5).set_index("law")
    assert list(table.index) == ["narrow", "short", "wide"]
    for name in table.index:
        alone = js.isoflop(df[df["law"] == name], by="law", n_resamples=300, seed=5).iloc[0]
        for col in ("a", "a_lower", "a_upper", "b", "b_lower", "b_upper", "nonconvex_fraction", "k_N"):
            assert abs(table.loc[name, col] - alone[col]) <= 1e-10 * max(1.0, abs(alone[col])), (name, col)
        assert table.loc[name, "n_budgets"] == alone["n_budgets"]
    # The 5-size budgets of "short" sometimes draw < 3 distinct sizes: dropped, counted (and
    # warned about: one budget's parabola is also non-convex in some resamples).
    assert 0 < table.loc["short", "nonconvex_fraction"] < 0.5
    assert table.loc["narrow", "nonconvex_fraction"] < 0.05


@pytest.mark.filterwarnings("ignore:isoflop.*rest on degenerate resamples:jaxscale.IsoflopWarning")
def test_results_do_not_depend_on_chunk_size(monkeypatch):
    df = ragged_groups()
    ref = js.isoflop(df, by="law", n_resamples=64, seed=2)
    monkeypatch.setattr("jaxscale._approaches.CHUNK_ELEMENTS", 1)  # one resample per chunk
    small = js.isoflop(df, by="law", n_resamples=64, seed=2)
    for col in ("a_lower", "a_upper", "b_lower", "b_upper"):
        np.testing.assert_allclose(small[col], ref[col], rtol=0, atol=1e-12)


def test_resample_weights_are_multinomial_within_each_budget():
    df = ragged_groups()
    data, _, _ = isoflop_data.prepare(df, "flops", "params", "loss", ["law"], None)
    with jax.enable_x64(True):
        w = np.asarray(ISOFLOP_MODULE._resample_weights(jax.random.key(0), 7, jax.tree.map(np.asarray, data)))
    np.testing.assert_array_equal(w.sum(-1), data.mask.sum(-1))  # each budget keeps its number of points
    assert np.all(w[data.mask == 0] == 0)  # padding never drawn
    assert np.all(w == np.round(w)) and w.max() > 1  # counts, some points drawn twice


def test_porian_configurations():
    df = pd.read_csv(PORIAN)
    assert (
        df.groupby(CONFIG).ngroups
        == 15
        == df.groupby(DESCRIBED_BY).ngroups
        == df.groupby(CONFIG + DESCRIBED_BY).ngroups
    )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = js.isoflop(df, by=CONFIG, n_resamples=1000, seed=0)
    took = time.perf_counter() - start
    assert len(table) == 15
    assert np.all(np.isfinite(table[["a", "a_lower", "a_upper"]].to_numpy()))
    assert np.all(table["a_lower"] < table["a_upper"])
    by_config = table.set_index(CONFIG)
    for dataset in ("rw", "owt2"):
        kaplan, tuned = by_config.loc[(dataset, KAPLAN)], by_config.loc[(dataset, TUNED)]
        assert kaplan["a_lower"] > tuned["a_upper"]  # non-overlapping 95% intervals
        assert kaplan["a"] > 0.8  # Kaplan et al.'s N* ∝ C^0.73–0.88 regime
        assert abs(tuned["a"] - 0.5) < 0.03  # Hoffmann et al.'s a ≈ 0.5
    edge = [str(w.message) for w in caught if issubclass(w.category, js.EdgeOfRangeWarning)]
    assert any(f"experiment={KAPLAN!r}" in m for m in edge)
    print(f"\nPorian et al. 2024, 15 configurations, 1000 resamples: {took:.2f} s (one call, with compilation)")
    shown = table.drop(columns=["budgets", "k_N", "k_D"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def test_porian_fixture_is_the_shared_file():
    assert PORIAN.read_bytes() == shared_file("porian2024_isoflops/isoflop_points.csv").read_bytes()


@pytest.mark.filterwarnings("ignore:isoflop.*rest on degenerate resamples:jaxscale.IsoflopWarning")
def test_edge_of_range_warning_names_group_and_budget():
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=[1e19, 1e20, 1e21], sizes=7)
    # A fourth budget sampled only below its optimum: loss falls all the way to the largest model.
    c = 1e22
    n = np.logspace(7.0, 8.5, 6)
    off = pd.DataFrame({"flops": c, "params": n, "loss": 1.8 + 400.0 / n**0.34 + 2000.0 / (c / (6 * n)) ** 0.37})
    assert off["loss"].idxmin() == off.index[-1]
    with pytest.warns(js.EdgeOfRangeWarning, match=r"group model='m1'.*1 budget\(s\).*C=1e\+22"):
        row = js.isoflop(pd.concat([df, off]).assign(model="m1"), by="model", n_resamples=20).iloc[0]
    assert row["n_budgets"] == 4  # warned about, not dropped


def test_skipped_and_nonconvex_budgets_are_counted():
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=[1e19, 1e20, 1e21], sizes=7)
    two_sizes = pd.DataFrame({"flops": 1e22, "params": [1e9, 1e9, 2e9], "loss": [2.0, 2.1, 2.05]})
    concave = pd.DataFrame({"flops": 1e23, "params": [1e9, 1e10, 1e11], "loss": [2.0, 2.2, 2.0]})
    with pytest.warns(js.IsoflopWarning, match=r"1 budget\(s\) skipped.*C=1e\+23 excluded: .*not convex"):
        row = js.isoflop(pd.concat([df, two_sizes, concave]), n_resamples=20).iloc[0]
    assert row["n_budgets"] == 3 and row["n_budgets_skipped"] == 2 and row["n_points"] == 21 + 3
    assert [b["compute"] for b in row["budgets"]] == [1e19, 1e20, 1e21]


def test_window_keeps_points_near_the_lowest_loss():
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=np.logspace(18, 21, 4), sizes=9, spread=2.0)
    row = js.isoflop(df, window=1.01, n_resamples=0).iloc[0]  # ±1 in ln N around the best of 9 sizes 0.5 apart
    assert row["n_points"] == 4 * 5
    assert abs(row["a"] - 0.37 / 0.71) < 1e-9  # same exactness argument, narrower grid


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.drop(columns="loss"), r"missing column\(s\) \['loss'\].*isoflop\(\.\.\., flops="),
        (lambda d: d.assign(params=d["params"].where(d.index != 3, np.nan)), r"column 'params' .*non-finite.*rows 3"),
        (lambda d: d.assign(flops=d["flops"].where(d.index != 5, -1.0)), r"column 'flops' has 1 non-positive.*rows 5"),
        (lambda d: d.assign(loss=d["loss"].where(d.index != 2, np.inf)), r"column 'loss' .*non-finite.*rows 2"),
        (
            lambda d: d.astype({"loss": object}).assign(loss=["2.1x"] + list(d["loss"][1:])),
            r"column 'loss' .*non-numeric",
        ),
    ],
)
def test_bad_input_names_the_column(change, message):
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=[1e19, 1e20], sizes=5)
    with pytest.raises(ValueError, match=message):
        js.isoflop(change(df), n_resamples=0)


def test_bad_arguments_and_files(tmp_path):
    df = chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=[1e19, 1e20], sizes=5)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['arch'\]"):
        js.isoflop(df, by=["arch"])
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        js.isoflop(df, level=95)
    with pytest.raises(ValueError, match="window .* must be > 0"):
        js.isoflop(df, window=0.0)
    with pytest.raises(ValueError, match="no budget has at least 3 distinct model sizes"):
        js.isoflop(df.head(2), n_resamples=0)
    with pytest.raises(FileNotFoundError, match="no such file"):
        js.isoflop(tmp_path / "absent.csv")


@pytest.mark.filterwarnings("ignore:isoflop.*rest on degenerate resamples:jaxscale.IsoflopWarning")
def test_json_dicts_follow_the_design_contract():
    table = js.isoflop(ragged_groups(), by="law", n_resamples=50)
    docs = js.isoflop_to_dicts(table)
    assert [d["group"] for d in docs] == [{"law": "narrow"}, {"law": "short"}, {"law": "wide"}]
    doc = json.loads(json.dumps(docs[0], allow_nan=False))  # strictly valid JSON
    assert {"a", "b", "ci", "budgets", "group"} <= set(doc)
    assert doc["ci"]["a"] == [table["a_lower"][0], table["a_upper"][0]]
    # The contract's keys, and what each budget is made of (runs, compute spread, resample health).
    assert set(doc["budgets"][0]) == {"compute", "N_opt", "D_opt", "loss", "n_runs", "flops_min", "flops_max"} | {
        "dropped_fraction",
        "edge_fraction",
    }
    assert doc["binning"] == {"method": "exact"} and doc["a_source"] == "fitted" and doc["b_source"] == "implied"
    assert doc["bootstrap"]["n_resamples"] == 50 and doc["bootstrap"]["level"] == 0.95


def test_cli_isoflop_json_by_configuration():
    out = run("isoflop", str(PORIAN), "--by", *CONFIG, "--resamples", "100", "--seed", "4", "--json")
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    assert isinstance(docs, list) and len(docs) == 15
    assert {tuple(d["group"][c] for c in CONFIG) for d in docs} == set(pd.read_csv(PORIAN).groupby(CONFIG).groups)
    assert "jaxscale: warning: isoflop: group dataset='rw', experiment='Reproducing Kaplan et al.'" in out.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", js.IsoflopWarning)
        api = js.isoflop(PORIAN, by=CONFIG, n_resamples=100, seed=4)
    for doc, (_, row) in zip(docs, api.iterrows(), strict=True):
        assert doc["a"] == pytest.approx(row["a"], rel=1e-12, abs=0)
        assert doc["ci"]["a"] == pytest.approx([row["a_lower"], row["a_upper"]], rel=1e-12, abs=0)
        assert len(doc["budgets"]) == row["n_budgets"]


def test_cli_isoflop_single_group_table_and_errors(tmp_path):
    path = tmp_path / "runs.csv"
    chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=[1e19, 1e20, 1e21], sizes=7).to_csv(path, index=False)
    out = run("isoflop", str(path), "--resamples", "50", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert isinstance(doc, dict) and doc["group"] == {} and len(doc["budgets"]) == 3
    assert abs(doc["a"] - 0.37 / 0.71) < 1e-9
    table = run("isoflop", str(path), "--resamples", "0")
    assert table.returncode == 0 and "n_budgets" in table.stdout
    bad = run("isoflop", str(path), "--N", "n_params")
    assert bad.returncode == 2 and "missing column(s) ['n_params']" in bad.stderr and bad.stdout == ""
