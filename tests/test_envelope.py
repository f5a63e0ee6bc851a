"""envelope (Approach 1): a known law recovered, exact interpolation, the bootstrap against a loop, Gemstones."""

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
from tests.conftest import shared_file

ENVELOPE_MODULE = importlib.import_module("jaxscale.envelope")  # the package attribute is the function
GEMSTONES = Path(__file__).parent / "fixtures" / "mcleish2025_gemstones" / "wandb_df_for_fitting_hot_100b+.jsonl"
VOCAB = 50304  # Gemstones' vocabulary: embedding parameters = VOCAB · width

# Hoffmann et al.'s fitted Chinchilla law: N_opt ∝ C^a with a = β/(α+β) ≈ 0.452 under C = 6ND.
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
A_TRUE = BETA / (ALPHA + BETA)
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))  # N_opt = G (C/6)^a


def only(table: pd.DataFrame) -> js.EnvelopeResult:
    """The one result of an envelope table without by=."""
    assert len(table) == 1 and table.attrs["by"] == []
    return table["result"].iloc[0]


def chinchilla_curves(sizes, *, reach=4.0, n_ckpt=41, noise=0.0, ragged=False, seed=0):
    """Training curves on the Chinchilla law: each run checkpointed from D_opt(N)/reach to reach·D_opt(N)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, n in enumerate(sizes):
        d_opt = (n / G) ** (1 / A_TRUE) / n  # the run's compute-optimal tokens: C/6 = (N/G)^(1/a)
        k = int(rng.integers(n_ckpt // 2, n_ckpt + 1)) if ragged else n_ckpt
        d = d_opt * np.exp(
            np.sort(rng.uniform(-1, 1, k)) * np.log(reach) if ragged else np.linspace(-1, 1, k) * np.log(reach)
        )
        loss = (E + A / n**ALPHA + B / d**BETA) * np.exp(noise * rng.standard_normal(k))
        parts.append(pd.DataFrame({"run": f"m{i:02d}", "params": n, "tokens": d, "loss": loss}))
    return pd.concat(parts, ignore_index=True)


def test_recovers_the_chinchilla_exponent():
    sizes = np.logspace(7, 10, 15)
    h = np.log(sizes[1] / sizes[0])  # spacing of the sizes in ln N: 0.49
    res = only(js.envelope(chinchilla_curves(sizes), n_resamples=1000, seed=0))
    f = res.frontier
    assert res.n_runs == 15 and res.n_budgets == 50 and f["N_opt"].nunique() >= 12
    # Quantisation: N_opt can only be one of the sizes, so ln N_opt(C) misses ln N*(C) = ln G + a ln(C/6)
    # by a sawtooth. Between two neighbouring sizes the envelope switches where their losses cross, near
    # the midpoint in ln N, so the error is at most h/2 (+0.01 for the loss' asymmetry in ln N about
    # its minimum and for the interpolation between checkpoints; measured max 0.489 h).
    x = np.log(f["compute"].to_numpy())
    err = np.log(f["N_opt"].to_numpy()) - (np.log(G) + A_TRUE * (x - np.log(6)))
    assert np.abs(err).max() <= h / 2 + 0.01
    # a is linear in ln N_opt: a − a_true = Σ dx·err / Σ dx², so |a − a_true| ≤ max|err| · Σ|dx| / Σ dx²
    # (0.047 here: the worst case of a sawtooth that always errs the same way on each side).
    dx = x - x.mean()
    bound = (h / 2 + 0.01) * np.abs(dx).sum() / (dx**2).sum()
    assert 0.04 < bound < 0.05
    assert abs(res.a - A_TRUE) <= bound
    # The sawtooth largely averages out (measured a − a_true = −0.0031); 0.01 catches e.g. a lost budget.
    assert abs(res.a - A_TRUE) < 0.01
    assert abs(res.a + res.b - 1) < 1e-12  # D_opt = C/(6 N_opt): b = 1 − a
    # The cluster bootstrap over runs (measured [0.427, 0.460]) contains a_true: dropping runs widens
    # the steps of the staircase, which spreads a over about ±2 h / (range of ln C).
    lo, hi = res.a_ci
    assert lo <= A_TRUE <= hi and 0.005 < hi - lo < 0.1
    assert res.failed_fraction == 0.0 and res.a_draws.shape == (1000,)


def test_envelope_equals_the_ideal_one_on_exact_losses():
    """Dense checkpoints: the picks equal the best size by the exact law at all but a switching budget."""
    sizes = np.logspace(7, 10, 15)
    res = only(js.envelope(chinchilla_curves(sizes, n_ckpt=81), n_budgets=60, n_resamples=0))
    f = res.frontier
    d = f["compute"].to_numpy()[:, None] / (6 * sizes[None, :])
    d_opt = (sizes / G) ** (1 / A_TRUE) / sizes
    exact = np.where(
        (d >= d_opt / 4 * (1 - 1e-12)) & (d <= d_opt * 4 * (1 + 1e-12)), E + A / sizes**ALPHA + B / d**BETA, np.inf
    )
    ideal = sizes[np.argmin(exact, axis=1)]
    assert np.sum(~np.isclose(f["N_opt"], ideal, rtol=1e-12)) <= 1
    # Between checkpoints 0.035 apart in ln C, log-log interpolation of this law is good to 1e-5.
    np.testing.assert_allclose(f["loss"], exact.min(axis=1), rtol=1e-5)
    assert np.isnan(res.a_ci[0]) and res.a_draws.shape == (0,)


def two_runs():
    """Run 'a' at C = 1e18, 1e19, 1e20 (losses 4, 3, 2.5); run 'b' is worse but runs further."""
    return pd.DataFrame(
        {
            "run": ["a", "a", "a", "b", "b", "b", "b"],
            "params": [1e8, 1e8, 1e8, 3e8, 3e8, 3e8, 3e8],
            "flops": [1e18, 1e19, 1e20, 1e18, 1e19, 1e20, 1e21],
            "loss": [4.0, 3.0, 2.5, 5.0, 3.5, 2.8, 2.2],
        }
    )


def test_interpolation_is_exact_at_checkpoints_and_log_log_linear_between():
    # Both runs cover 1e18–1e20 (the range shared by 2 runs): 9 budgets, 4 per decade.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", js.EnvelopeWarning)  # one size holds the whole envelope: warned, see below
        res = only(js.envelope(two_runs(), flops="flops", n_budgets=9, n_resamples=0))
    f = res.frontier
    np.testing.assert_allclose(f["compute"], np.logspace(18, 20, 9), rtol=1e-13)
    assert list(f["run"]) == ["a"] * 9 and res.n_budgets == 9
    # The grid's ends are checkpoints: exact up to one rounding of exp(ln L) (the table below is exact).
    np.testing.assert_allclose(f["loss"].iloc[[0, -1]], [4.0, 2.5], rtol=1e-15)
    # By hand: a quarter of a decade past 1e18, ln L = 0.75 ln 4 + 0.25 ln 3; half way, √(4·3).
    expected = [4.0, 4**0.75 * 3**0.25, 12**0.5, 4**0.25 * 3**0.75, 3.0, 3**0.75 * 2.5**0.25, 7.5**0.5]
    np.testing.assert_allclose(f["loss"].iloc[:7], expected, rtol=1e-13)
    np.testing.assert_allclose(f["D_opt"], f["compute"] / (6 * 1e8), rtol=1e-15)
    # The kernel's table directly: exactly ln L at a checkpoint, +inf outside a run's range (no extrapolation).
    data, _, _ = ENVELOPE_MODULE._prepare(two_runs(), _cols(flops="flops"), [], 6.0, 3)
    data = data._replace(grid=np.log([[1e18, 1e19, 1e21]]))
    with jax.enable_x64(True):
        table = np.asarray(ENVELOPE_MODULE._loss_table(jax.tree.map(np.asarray, data)))[0]
    assert table[0, 0] == np.log(4.0) and table[1, 0] == np.log(3.0) and table[2, 0] == np.inf
    assert table[1, 1] == np.log(3.5) and table[2, 1] == np.log(2.2)


def _cols(**kw):
    return {"run": "run", "N": "params", "loss": "loss", "flops": None, "tokens": "tokens", **kw}


def reference_draw(df, n_budgets, present):
    """Slow reference for one resample: Python loops over budgets and present runs, np.interp, np.polyfit."""
    curves = {r: g.assign(c=6 * g["params"] * g["tokens"]).sort_values("c") for r, g in df.groupby("run")}
    lo = np.array([np.log(g["c"].min()) for g in curves.values()])
    hi = np.array([np.log(g["c"].max()) for g in curves.values()])
    both = lambda x: sum((lo <= x) & (x <= hi)) >= 2  # noqa: E731  the documented range: >= 2 runs
    grid = np.linspace(min(v for v in lo if both(v)), max(v for v in hi if both(v)), n_budgets)
    xs, ys = [], []
    for q in grid:
        best = (np.inf, None)
        for r, g in curves.items():
            lc = np.log(g["c"].to_numpy())
            if r in present and lc[0] <= q <= lc[-1]:
                v = np.interp(q, lc, np.log(g["loss"].to_numpy()))
                best = min(best, (v, np.log(g["params"].iloc[0])), key=lambda t: t[0])
        if best[1] is not None:
            xs.append(q)
            ys.append(best[1])
    return np.polyfit(xs, ys, 1)[0] if len(set(xs)) >= 2 else np.nan


def test_bootstrap_is_reproducible_and_equals_a_python_loop():
    df = chinchilla_curves(np.logspace(7, 9.5, 9), reach=6.0, noise=0.01, ragged=True, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", js.EnvelopeWarning)  # the edges of this ragged design are not the point
        res = only(js.envelope(df, n_budgets=30, n_resamples=200, seed=11))
        again = only(js.envelope(df, n_budgets=30, n_resamples=200, seed=11))
        other = only(js.envelope(df, n_budgets=30, n_resamples=200, seed=12))
    assert again.a_ci == res.a_ci and np.array_equal(again.a_draws, res.a_draws, equal_nan=True)
    assert other.a_ci != res.a_ci
    runs = sorted(df["run"].unique(), key=lambda r: (df.loc[df["run"] == r, "params"].iloc[0], r))  # the kernel's order
    key = jax.random.key(11)
    for i in range(6):
        with jax.enable_x64(True):
            counts = np.asarray(ENVELOPE_MODULE._resample_counts(key, i, np.array([9]), np.array([0]), 9, False))[0]
        assert counts.sum() == 9  # multinomial: 9 runs drawn with replacement
        present = {r for r, k in zip(runs, counts, strict=True) if k > 0}
        assert abs(res.a_draws[i] - reference_draw(df, 30, present)) <= 1e-12, i
    # The point estimate is the same reference with every run present.
    assert abs(res.a - reference_draw(df, 30, set(runs))) <= 1e-12


def test_groups_equal_each_group_alone_and_chunking_does_not_matter(monkeypatch):
    parts = [
        chinchilla_curves(np.logspace(7, 10, 12), noise=0.005, seed=1).assign(law="wide"),
        chinchilla_curves(np.logspace(7.5, 9, 7), reach=3.0, ragged=True, seed=2).assign(law="narrow"),
    ]
    df = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0)  # row order must not matter
    table = js.envelope(df, by="law", n_resamples=100, seed=4).set_index("law")
    assert list(table.index) == ["narrow", "wide"] and list(table["n_runs"]) == [7, 12]
    for name in table.index:
        alone = js.envelope(df[df["law"] == name], by=["law"], n_resamples=100, seed=4).iloc[0]
        for col in ("a", "a_lower", "a_upper", "b", "b_lower", "b_upper"):
            assert abs(table.loc[name, col] - alone[col]) <= 1e-12, (name, col)
        assert table.loc[name, "result"].group == {"law": name}
    plain = js.envelope(df[df["law"] == "wide"], n_resamples=0)  # no by=: the same table, one row
    assert list(plain.columns) == [c for c in table.reset_index().columns if c != "law"] and len(plain) == 1
    monkeypatch.setattr("jaxscale._approaches.CHUNK_ELEMENTS", 1)  # one resample per chunk
    small = js.envelope(df, by="law", n_resamples=100, seed=4).set_index("law")
    np.testing.assert_allclose(small[["a_lower", "a_upper"]], table[["a_lower", "a_upper"]], rtol=0, atol=1e-12)


def test_gemstones_approach_1():
    df = pd.read_json(GEMSTONES, lines=True)
    assert len(df) == 770 and df["run_name"].nunique() == 22
    kw = {"run": "run_name", "N": "params_active_precise", "tokens": "tokens", "loss": "final_loss"}
    start = time.perf_counter()
    res = only(js.envelope(df, **kw, n_resamples=1000, seed=0))  # N including embeddings
    took = time.perf_counter() - start
    no_embed = df.assign(params_active_precise=df["params_active_precise"] - VOCAB * df["width"])
    start = time.perf_counter()
    res_ne = only(js.envelope(no_embed, **kw, n_resamples=1000, seed=0))
    took_ne = time.perf_counter() - start
    for r in (res, res_ne):
        lo, hi = r.a_ci
        assert np.isfinite([r.a, r.b, lo, hi]).all() and 0 < r.a < 1.5 and hi - lo > 0
        assert r.n_runs == 22 and r.n_budgets == 50 and r.failed_fraction == 0.0
    print(f"\nGemstones hot_100b+ (22 runs, 770 checkpoints), N incl. embeddings, {took:.2f} s with compilation:")
    print(res)
    print(f"N without embeddings (N - {VOCAB}·width), {took_ne:.3f} s:")
    print(res_ne)


def test_gemstones_fixture_is_the_shared_file():
    shared = shared_file("mcleish2025_gemstones/wandb_dfs/wandb_df_for_fitting_hot_100b+.jsonl")
    assert GEMSTONES.read_bytes() == shared.read_bytes()


def test_path_input_json_and_text(tmp_path):
    path = tmp_path / "curves.csv"
    two_runs().to_csv(path, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = only(js.envelope(path, flops="flops", n_budgets=9, n_resamples=50))
    messages = sorted(str(w.message) for w in caught if issubclass(w.category, js.EnvelopeWarning))
    assert len(messages) == len(caught) == 2
    assert "smallest run (N=1e+08) at 9 of 9 budgets (C=1e+18–1e+20)" in messages[1]
    assert "only 1 size(s) attain the envelope (1e+08): a is ill-determined" in messages[0]
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))  # strictly valid JSON
    assert abs(doc["a"]) < 1e-12 and np.allclose(doc["ci"]["a"], 0, atol=1e-12)  # one size everywhere: flat
    first = doc["frontier"][0]
    assert first["run"] == "a" and first["N_opt"] == 1e8
    # Budgets are exp of a grid in ln C (≈ 41.4): one rounding there is 41·2⁻⁵³ ≈ 5e-15 relative.
    np.testing.assert_allclose([first["compute"], first["D_opt"], first["loss"]], [1e18, 1e18 / 6e8, 4.0], rtol=1e-14)
    assert doc["bootstrap"] == {"n_resamples": 50, "seed": 0, "failed_fraction": 0.0} and doc["group"] == {}
    assert "Approach 1 (lower envelope): 2 runs, 9 budgets C = 1e+18 … 1e+20" in str(res)


def test_edge_of_range_warning_names_the_run_and_budgets():
    # Curves running to 100x past each size's optimum: at the low budgets the best size is below the
    # smallest run, which then holds the envelope over many budgets (and flattens a).
    with pytest.warns(js.EnvelopeWarning, match=r"smallest run \(N=1e\+07\) at 9 of 50 budgets.*biases a towards 0"):
        res = only(js.envelope(chinchilla_curves(np.logspace(7, 10, 15), reach=100.0), n_resamples=0))
    assert res.a < A_TRUE - 0.05


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.drop(columns="tokens"), r"missing column\(s\) \['tokens'\].*envelope\(\.\.\., run="),
        (lambda d: d.assign(loss=d["loss"].where(d.index != 3, np.nan)), r"column 'loss' .*non-finite.*rows 3\b"),
        (lambda d: d.assign(tokens=d["tokens"].where(d.index != 7, np.inf)), r"column 'tokens' .*non-finite.*rows 7\b"),
        (
            lambda d: d.assign(params=d["params"].where(d.index != 5, -1.0)),
            r"column 'params' has 1 non-positive.*rows 5\b",
        ),
        (lambda d: d.assign(run=d["run"].where(d.index != 4, None)), r"column 'run' has 1 missing run ids \(rows 4\)"),
        (
            lambda d: d.assign(params=d["params"].where(~d.index.isin([45, 46]), 2e7)),
            r"run 'm01' has checkpoints with a different value in column 'params' \(rows 45, 46: 2e\+07",
        ),
        (lambda d: pd.concat([d, d.iloc[[2]]]), r"run 'm00' has several checkpoints at the same compute \(rows 2, 2\)"),
        (lambda d: d[d["run"] == "m02"], r"only 1 run \(column 'run': 'm02'\).*at least 2 runs"),
    ],
)
def test_bad_input_names_the_column_and_rows(change, message):
    df = chinchilla_curves(np.logspace(7, 8, 4))
    with pytest.raises(ValueError, match=message):
        js.envelope(change(df), n_resamples=0)


def test_bad_arguments_and_disjoint_curves():
    df = two_runs()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['arch'\]"):
        js.envelope(df, flops="flops", by="arch")
    with pytest.raises(ValueError, match=r"only 1 run in group arch='x'"):
        js.envelope(df.assign(arch=np.where(df["run"] == "a", "x", "y")), flops="flops", by="arch")
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        js.envelope(df, flops="flops", level=95)
    with pytest.raises(ValueError, match="n_budgets must be at least 2"):
        js.envelope(df, flops="flops", n_budgets=1)
    apart = df.assign(flops=np.where(df["run"] == "b", df["flops"] * 1e6, df["flops"]))
    with pytest.raises(ValueError, match=r"no 2 runs of different sizes overlap .*columns 'params' and 'flops'"):
        js.envelope(apart, flops="flops")


def two_learning_rates():
    """Each size trained at two learning rates, the higher 1% worse: runs are (model, lr) pairs."""
    base = chinchilla_curves(np.logspace(7.5, 9.5, 7))
    return pd.concat([base.assign(lr=1e-3), base.assign(lr=3e-3, loss=base["loss"] * 1.01)], ignore_index=True)


@pytest.mark.filterwarnings("ignore::jaxscale.EnvelopeWarning")  # edge sizes: not what these test
def test_several_run_columns_make_one_run_key():
    df = two_learning_rates()
    with pytest.raises(ValueError, match=r"several checkpoints at the same compute.*run=\[\.\.\.\] takes several"):
        js.envelope(df, n_resamples=0)  # (model) alone mixes the two learning rates' curves
    res = only(js.envelope(df, run=["run", "lr"], n_resamples=50))
    alone = only(js.envelope(df[df["lr"] == 1e-3], n_resamples=0))
    assert res.n_runs == 14
    assert res.a == pytest.approx(alone.a, rel=1e-12)  # the better learning rate is the envelope
    assert {lr for _, lr in res.frontier["run"]} == {1e-3}
    with pytest.raises(ValueError, match=r"columns \['run', 'lr'\] have 1 missing run ids \(rows 3\)"):
        js.envelope(df.assign(lr=df["lr"].where(df.index != 3, np.nan)), run=["run", "lr"], n_resamples=0)


@pytest.mark.filterwarnings("ignore::jaxscale.EnvelopeWarning")  # edge sizes: not what these test
def test_cli_envelope(tmp_path):
    from tests.test_cli import run

    path = tmp_path / "curves.csv"
    two_learning_rates().to_csv(path, index=False)
    out = run("envelope", str(path), "--run", "run", "lr", "--resamples", "50", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    api = only(js.envelope(path, run=["run", "lr"], n_resamples=50))
    assert doc["a"] == pytest.approx(api.a, rel=1e-12) and doc["ci"]["a"] == pytest.approx(list(api.a_ci), rel=1e-12)
    assert doc["n_runs"] == 14
    table = run("envelope", str(path), "--run", "run", "lr", "--resamples", "0")
    assert table.returncode == 0 and "n_budgets" in table.stdout
    bad = run("envelope", str(path), "--run", "model")
    assert bad.returncode == 2 and "missing column(s) ['model']" in bad.stderr and "--run --N --tokens" in bad.stderr
    mixed = run("envelope", str(path), "--resamples", "0")
    assert mixed.returncode == 2 and "--run takes several columns" in mixed.stderr
