"""``validate``: held-out prediction errors, and Gadre et al.'s extrapolation check: fit the
over-training law on the four small model sizes, predict the 1.4B and 6.9B runs."""

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

import jaxscale as js

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = ["d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8"]  # 0.011B-0.411B


def gadre():
    return pd.read_csv(FIXTURES / "gadre2024_overtraining" / "models_losses.csv")


def gadre_runs(frame):
    # N with embeddings and M = 20 x Chinchilla multiplier, the authors' fit inputs; C4 eval loss.
    return js.read_runs(frame, N="params_N", M="tokens_per_param_M", loss="loss_c4_val")


def paper_train_mask(frame):
    """The authors' default fit set (scaling/shared.py::fit_ds): the four small sizes at M = 20,
    plus the 0.011B model at M = 320."""
    small = frame["model_config"].isin(SMALL)
    return (
        (small & (frame["chinchilla_multiplier"] == 1.0))
        | ((frame["model_config"] == SMALL[0]) & (frame["chinchilla_multiplier"] == 16.0))
    ).to_numpy()


def authors_estimator(frame):
    """Relative errors on the 1.4B/6.9B runs of the authors' own procedure, rerun with scipy:
    least squares on the loss itself over their 5 runs, best of their 128 initial values
    (scaling/laws.py::curve_fit_powlaw_ours), the law in numpy. Indexed like ``frame``."""
    train = frame[paper_train_mask(frame)]
    n, m, y = (train[c].to_numpy(float) for c in ("params_N", "tokens_per_param_M", "loss_c4_val"))

    def law(p, n, m):
        alpha, beta, b, e = p
        return alpha * n**b + beta * 6 ** (b / 2) * (m * n) ** b + e

    best = None
    for p0 in itertools.product([1e2, 3e2, 1e3, 3e3], [1e2, 3e2, 1e3, 3e3], [-0.1, -0.3], [0.0, 1.0, 2.0, 10.0]):
        res = least_squares(lambda p: law(p, n, m) - y, p0, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10000)
        if best is None or res.cost < best.cost:
            best = res
    big = frame[frame["params_N"] > 1e9]
    return (
        law(best.x, big["params_N"].to_numpy(float), big["tokens_per_param_M"].to_numpy(float)) / big["loss_c4_val"] - 1
    )


# Bounds. The authors' notebook (scaling_explorer.ipynb, cell 3) prints their relative errors for
# RedPajama: 0.7103% (1.4B, M = 640) and 0.7320% (6.9B, M = 20); rerunning their procedure here
# reproduces both to 4 digits (asserted below), and gives as worst cases 4.30% for C4 (6.9B) and
# 1.62% for RefinedWeb (6.9B). Our estimator differs (Huber on log residuals over all 31-32 small
# runs), so: RedPajama < 2x its published worst case; every dataset < 6%, the authors' own worst
# case (4.3%) plus 40% -- an error that size on C4's 6.9B run is the law's and the data's.
RPJ_BOUND = 2 * 0.00732
ALL_BOUND = 0.06


def test_gadre_overtraining_law_extrapolates_to_1b_and_7b():
    df = gadre()
    rows = []
    for dataset, frame in df.groupby("train_dataset", sort=True):
        runs = gadre_runs(frame)
        table = js.validate(runs, law="overtraining", train=lambda r: r.x[:, r.inputs.index("N")] < 1e9)
        five = js.validate(runs, law="overtraining", train=paper_train_mask(frame))
        authors = authors_estimator(frame)
        summary = table.attrs["summary"]
        assert summary["converged"] and five.attrs["summary"]["converged"], dataset
        assert summary["n_train"] == int((frame["params_N"] < 1e9).sum()) and summary["n_held_out"] == 3
        held = table[table["split"] == "held_out"]
        assert np.all(np.isfinite(held["rel_error"]))
        for idx, row in held.iterrows():
            rows.append(
                {
                    "dataset": dataset,
                    "N": row["N"],
                    "M": row["M"],
                    "loss": row["loss"],
                    "predicted": row["predicted"],
                    "rel_err_%": 100 * row["rel_error"],
                    "ours_5_runs_%": 100 * five.loc[idx, "rel_error"],
                    "authors_5_runs_%": 100 * authors.loc[idx],
                }
            )
        fitted = table.attrs["fit"]
        print(
            f"\n{dataset}: fit on {summary['n_train']} runs; E={fitted.params['E']:.4f} "
            f"alpha={fitted.params['alpha']:.1f} beta={fitted.params['beta']:.1f} b={fitted.derived['b']:.4f}; "
            f"held-out mean |rel err| {100 * summary['mean_abs_rel_error']:.2f}%, "
            f"max {100 * summary['max_abs_rel_error']:.2f}%"
        )
        assert summary["max_abs_rel_error"] < ALL_BOUND, dataset
        if dataset == "rpj":
            assert summary["max_abs_rel_error"] < RPJ_BOUND
            # The authors' printed figures, from their procedure on this file's runs.
            np.testing.assert_allclose(np.abs(authors.to_numpy()[1:]), [0.007103, 0.007320], atol=5e-7)
    report = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print(report.to_string(index=False))
    assert report["authors_5_runs_%"].abs().max() == pytest.approx(4.295, abs=0.01)  # C4, 6.9B


def test_held_out_runs_do_not_influence_the_fit():
    frame = gadre().query("train_dataset == 'rw_original'")
    runs = gadre_runs(frame)
    train = runs.x[:, 0] < 1e9
    base = js.validate(runs, law="overtraining", train=train)
    moved = runs._replace(y=np.where(train, runs.y, runs.y * 1.5))  # wreck the held-out losses
    other = js.validate(moved, law="overtraining", train=train)
    assert other.attrs["params"] == pytest.approx(base.attrs["params"], rel=1e-12)
    held = ~train
    np.testing.assert_allclose(other["predicted"], base["predicted"], rtol=1e-12)
    np.testing.assert_allclose(other["rel_error"][held], (base["predicted"] / (runs.y * 1.5) - 1)[held], rtol=1e-12)
    # Train-set figures come from the same fit.
    fit = js.fit(runs, law="overtraining", weights=train.astype(float))
    assert base.attrs["summary"]["objective"] == pytest.approx(fit.objective, rel=1e-12)


def test_validate_table_shape_and_mask_forms():
    runs = js.datasets.chinchilla()
    mask = runs.x[:, 1] < 1e11
    table = js.validate(runs, law="chinchilla", train=mask)
    same = js.validate(runs, law="chinchilla", train=lambda r: r.x[:, 1] < 1e11)
    pd.testing.assert_frame_equal(table, same)
    assert list(table.columns) == ["N", "D", "loss", "predicted", "rel_error", "abs_rel_error", "split"]
    assert (table["split"] == "held_out").sum() == (~mask).sum()
    held = table.loc[table["split"] == "held_out", "abs_rel_error"]
    summary = table.attrs["summary"]
    assert summary["mean_abs_rel_error"] == pytest.approx(held.mean(), rel=1e-12)
    assert summary["max_abs_rel_error"] == pytest.approx(held.max(), rel=1e-12)
    assert summary["status"] == "converged" and summary["law"] == "chinchilla"
    np.testing.assert_allclose(table["rel_error"], table["predicted"] / table["loss"] - 1, rtol=1e-12)


def test_validate_errors_say_what_to_do():
    runs = js.datasets.chinchilla()
    with pytest.raises(ValueError, match="one per run"):
        js.validate(runs, law="chinchilla", train=np.ones(3, bool))
    with pytest.raises(ValueError, match="one per run"):
        js.validate(runs, law="chinchilla", train=np.ones(runs.n_points))  # floats, not booleans
    with pytest.raises(ValueError, match="nothing is held out"):
        js.validate(runs, law="chinchilla", train=np.ones(runs.n_points, bool))
    with pytest.raises(ValueError, match="nothing to fit"):
        js.validate(runs, law="chinchilla", train=np.zeros(runs.n_points, bool))
    with pytest.raises(ValueError, match="train="):
        js.validate(runs, law="chinchilla", train=runs.x[:, 0] < 1e9, weights=np.ones(runs.n_points))


def test_tokens_per_parameter_derived_from_n_and_d():
    """The over-training law reads M; runs with N and D get M = D / N (Gadre's M column is exactly that)."""
    frame = gadre().query("train_dataset == 'rpj'")
    with_m = js.fit(js.read_runs(frame, N="params_N", M="tokens_per_param_M", loss="loss_c4_val"), law="overtraining")
    with_d = js.fit(js.read_runs(frame, N="params_N", D="tokens_D", loss="loss_c4_val"), law="overtraining")
    assert with_m.converged and with_d.converged
    np.testing.assert_allclose(with_d.objective, with_m.objective, rtol=1e-9)
    for name, value in with_m.params.items():
        np.testing.assert_allclose(with_d.params[name], value, rtol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match=r"needs inputs \['N', 'M'\] but the runs have \['N'\]"):
        js.fit(js.read_runs(frame, N="params_N", loss="loss_c4_val"), law="overtraining")


def test_holdout_selects_the_runs_scored():
    frame = gadre()
    c4 = frame[frame["train_dataset"] == "c4_original"]
    runs = js.read_runs(c4, N="params_N", D="tokens_D", loss="loss_c4_val")
    n = runs.x[:, 0]
    table = js.validate(runs, train=n < 5e8, holdout=n > 5e9)
    s = table.attrs["summary"]
    assert (s["n_train"], s["n_held_out"], s["n_unused"]) == (31, 1, 2)  # the 7B run; the two 1.4B unused
    assert set(table["split"]) == {"train", "held_out", "unused"}
    seven_b = table[table["split"] == "held_out"]["abs_rel_error"].iloc[0]
    assert s["max_abs_rel_error"] == s["mean_abs_rel_error"] == seven_b
    with pytest.raises(ValueError, match=r"8 runs are in both train and holdout \(rows 0, 1, 2, 3, 4 and 3 more\)"):
        js.validate(runs, train=n < 5e8, holdout=(n < 2e7))
    with pytest.raises(ValueError, match="holdout selects no run"):
        js.validate(runs, train=n < 5e8, holdout=n > 1e12)


def test_cli_validate_where_holdout_by(tmp_path):
    from tests.test_cli import run

    path = tmp_path / "gadre.csv"
    gadre().to_csv(path, index=False)
    cols = ["--N", "params_N", "--D", "tokens_D", "--loss", "loss_c4_val"]
    out = run(
        "validate", str(path), *cols, "--train", "params_N < 5e8", "--holdout", "params_N > 5e9",
        "--by", "train_dataset", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    assert [d["group"]["train_dataset"] for d in docs] == ["c4_original", "rpj", "rw_original"]
    assert all(d["summary"]["n_held_out"] == 1 for d in docs)
    c4 = gadre()[gadre()["train_dataset"] == "c4_original"]
    runs = js.read_runs(c4, N="params_N", D="tokens_D", loss="loss_c4_val")
    api = js.validate(runs, train=runs.x[:, 0] < 5e8, holdout=runs.x[:, 0] > 5e9).attrs["summary"]
    assert docs[0]["summary"]["max_abs_rel_error"] == pytest.approx(api["max_abs_rel_error"], rel=1e-9)
    only = run("validate", str(path), *cols, "--where", "train_dataset == 'rpj'", "--train", "params_N < 5e8")
    assert only.returncode == 0, only.stderr
    assert "fitted on the 32 runs" in only.stdout and "predicting the 3 others" in only.stdout  # its 1.4B x 2, 7B
