"""isoFLOP points from checkpoint logs: interpolation checked by hand, bad input named, and Li et al.'s runs."""

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from jaxscale import CheckpointWarning, isoflop_points
from tests.conftest import shared_file
from tests.test_isoflop import chinchilla_isoflops


def curves(alpha=0.34, beta=0.37, sizes=None, seed=0, shuffle=True):
    """Chinchilla-law training curves (C = 6ND): one run per size, checkpoints log-spaced in tokens."""
    sizes = np.logspace(7.5, 9.5, 9) if sizes is None else sizes
    rows = []
    for i, n in enumerate(sizes):
        d = np.logspace(8.5, 11.5, 40)
        rows.append(
            pd.DataFrame({"run": f"r{i}", "params": n, "tokens": d, "loss": 1.8 + 400 / n**alpha + 2000 / d**beta})
        )
    df = pd.concat(rows, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed) if shuffle else df  # unsorted checkpoints are fine


def test_interpolates_in_log_log_between_neighbours():
    df = curves(shuffle=True)
    budgets = [1e18, 1e19]
    at = isoflop_points(df, budgets)
    for _, row in at.iterrows():
        run = df[df["run"] == row["run"]].sort_values("tokens")
        c = 6 * run["params"] * run["tokens"]
        want = np.exp(np.interp(np.log(row["flops"]), np.log(c), np.log(run["loss"])))
        assert row["loss"] == pytest.approx(want, rel=1e-12)
        assert row["tokens"] == pytest.approx(row["flops"] / (6 * row["params"]), rel=1e-12)
        assert row["nearest_rtol"] <= 0.1
    # Every run whose checkpoints reach the budget (within 10%) gives one point.
    reach = df.assign(c=6 * df["params"] * df["tokens"]).groupby("run")["c"].agg(["min", "max"])
    for b in budgets:
        inside = ((reach["min"] <= b * 1.1) & (reach["max"] >= b / 1.1)).sum()
        assert (at["flops"] == b).sum() == inside


def test_checkpoint_curves_recover_the_isoflop_exponent():
    df = curves(sizes=np.logspace(7.0, 10.0, 16))
    at = isoflop_points(df, np.logspace(18, 20, 5))
    row = js.isoflop(at, n_resamples=0).iloc[0]
    exact = js.isoflop(
        chinchilla_isoflops(1.8, 400.0, 2000.0, 0.34, 0.37, budgets=np.logspace(18, 20, 5)), n_resamples=0
    )
    assert abs(row["a"] - 0.37 / 0.71) < 0.02 and abs(exact["a"][0] - 0.37 / 0.71) < 1e-9


def test_lowest_per_size_and_several_run_columns():
    df = curves(shuffle=False)
    worse = df.assign(loss=df["loss"] * 1.01, lr="high")  # a second learning rate, uniformly worse
    both = pd.concat([df.assign(lr="low"), worse], ignore_index=True)
    all_runs = isoflop_points(both, [1e19], run=["run", "lr"])
    best = isoflop_points(both, [1e19], run=["run", "lr"], lowest_per_size=True)
    assert len(all_runs) == 2 * len(best) and set(best["lr"]) == {"low"}
    with pytest.raises(
        ValueError, match=r"run 'r0' has several checkpoints at the same compute.*different runs .*run=\[\.\.\.\]"
    ):
        isoflop_points(both, [1e19])  # one run id for two learning rates: two curves mixed up


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.drop(columns="tokens"), r"missing column\(s\) \['tokens'\]"),
        (
            lambda d: d.assign(loss=d["loss"].where(d.index != 7, -1.0)),
            r"column 'loss' has 1 non-positive values \(rows 7\)",
        ),
        (lambda d: d.assign(run=d["run"].where(d.index != 3, None)), r"missing run ids \(rows 3\)"),
        (lambda d: pd.concat([d, d.iloc[[5]]]), r"run 'r0' has several checkpoints at the same compute \(rows 5, 5\)"),
    ],
)
def test_bad_curves_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        isoflop_points(change(curves(shuffle=False)), [1e19])


def test_unreached_budgets_warn_and_none_reached_raises():
    df = curves(shuffle=False)
    with pytest.warns(CheckpointWarning, match=r"within 10% of budget\(s\) 1e\+30"):
        isoflop_points(df, [1e19, 1e30])
    with pytest.raises(ValueError, match="no run has a checkpoint within 10% of any budget"):
        isoflop_points(df, [1e30])
    with pytest.raises(ValueError, match="rtol is a relative distance"):
        isoflop_points(df, [1e19], rtol=2.0)


def test_li_et_al_isoflop_from_checkpoints():
    df = pd.read_csv(shared_file("li2025_misfitting/scaling_results.csv"))
    # 16 runs log their final evaluation 2-3 times (README): one row per checkpoint.
    df = df.drop_duplicates(["model", "total_steps", "peak_lr", "sweep", "D"])
    budgets = 1e16 * 2.0 ** np.arange(12)  # Li et al.'s grid, as Porian et al.'s
    with pytest.warns(CheckpointWarning, match=r"1e\+16, 2e\+16"):
        at = isoflop_points(
            df, budgets, run=["model", "total_steps", "peak_lr", "sweep"], N="N", tokens="D", loss="loss",
            lowest_per_size=True,  # the best learning rate of each size at each budget
        )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", js.IsoflopWarning)  # 3-run and edge budgets, named
        table = js.isoflop(at, N="N", D="D", method="akima", n_resamples=1000, seed=0)
    row = table.iloc[0]
    # The paper's checkpoint-interpolated exponent is not available here (issue 23 note); the
    # repository's stored final-checkpoint analysis gives 0.584 for N and 0.419 for tokens, from
    # 1 run per size. From every checkpoint, 7 budgets have an interior optimum: a = 0.496,
    # 95% interval 0.40-0.57 (seed 0), which does not contain that 0.584; two of the budgets
    # (3 runs at 2.05e19, an edge optimum at 3.2e17) are flagged.
    assert row["n_budgets"] == 7
    assert 0.45 < row["a"] < 0.55 and row["a_lower"] < row["a"] < row["a_upper"]
    assert "C=2.05e+19 (3 runs" in row["interval_warning"]
    a, b = (f"{row[q]:.3f} [{row[q + '_lower']:.3f}, {row[q + '_upper']:.3f}]" for q in "ab")
    print(f"\nLi et al., isoFLOP from checkpoints (Akima): a = {a}, b = {b}, {row['n_budgets']} budgets")
