"""Results saved and loaded without loss: fits, bootstraps, group tables."""

import json

import numpy as np
import pandas as pd
import pytest

import jaxscale as js


@pytest.fixture(scope="module")
def chinchilla_fit():
    return js.fit(js.datasets.chinchilla())


def test_fit_round_trip_predicts_and_gives_frontiers(tmp_path, chinchilla_fit):
    res = chinchilla_fit
    loaded = js.load(js.save(res, tmp_path / "fit.json"))
    assert isinstance(loaded, js.FitResult)
    assert loaded.params == res.params  # exact: floats are written in full
    np.testing.assert_array_equal(loaded.theta, res.theta)
    for field in ("objective", "status", "steps", "grad_norm", "n_points", "n_at_optimum", "fixed", "loss_fn", "delta"):
        assert getattr(loaded, field) == getattr(res, field), field
    assert loaded.law is res.law and str(loaded) == str(res)
    np.testing.assert_array_equal(loaded.predict(N=[7e10], D=[1.4e12]), res.predict(N=[7e10], D=[1.4e12]))
    pd.testing.assert_frame_equal(js.frontier(loaded, compute=[1e22, 1e24]), js.frontier(res, compute=[1e22, 1e24]))


def test_bootstrap_round_trip(tmp_path):
    boot = js.bootstrap(js.datasets.chinchilla(), n_resamples=8, seed=3)
    loaded = js.load(js.save(boot, tmp_path / "boot.json"))
    np.testing.assert_array_equal(loaded.draws, boot.draws)
    np.testing.assert_array_equal(loaded.objective, boot.objective)
    np.testing.assert_array_equal(loaded.status, boot.status)
    assert loaded.seed == 3 and loaded.point.params == boot.point.params
    pd.testing.assert_frame_equal(loaded.ci(0.9), boot.ci(0.9))


def test_non_finite_values_survive_as_valid_json(tmp_path, chinchilla_fit):
    res = chinchilla_fit._replace(grad_norm=float("nan"), objective=float("inf"))
    path = js.save(res, tmp_path / "odd.json")
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    loaded = js.load(path)
    assert np.isnan(loaded.grad_norm) and loaded.objective == float("inf")


def group_table():
    df = pd.DataFrame(js.datasets.chinchilla_table()).query("in_epoch_fit_set == 1")
    df["size"] = np.where(df["params_N"] < 1e9, "small", "large")
    return js.fit_groups(df, by="size", N="params_N", D="tokens_D", n_resamples=8)


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_group_table_round_trip(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    table = group_table()
    loaded = js.load(js.save(table, tmp_path / f"table{suffix}"))
    pd.testing.assert_frame_equal(loaded, table, check_exact=True, check_dtype=suffix == ".json")
    assert list(loaded["size"]) == ["large", "small"] and loaded["converged"].dtype == bool


def test_user_law_must_be_registered_or_given(tmp_path):
    law = js.make_law(
        lambda p, x: p["E"] + p["A"] / x["N"] ** p["alpha"],
        params=("E", "A", "alpha"),
        inputs=("N",),
        positive=("E", "A"),
        grid={"E": [1.0, 2.0], "A": [10.0, 100.0], "alpha": [0.1, 0.3]},
        name="saving_test_law",
    )
    n = np.geomspace(1e6, 1e9, 12)
    res = js.fit(js.Runs.from_arrays({"N": n}, 1.5 + 50.0 / n**0.25), law=law)
    path = js.save(res, tmp_path / "mine.json")
    with pytest.raises(ValueError, match=r"law 'saving_test_law'.*not registered.*jaxscale.register\(law\)"):
        js.load(path)
    assert js.load(path, law=law).params == res.params
    with pytest.raises(ValueError, match=r"fits parameters .* but the saved result has"):
        js.load(path, law="chinchilla")


def test_bad_files_and_types(tmp_path, chinchilla_fit):
    with pytest.raises(FileNotFoundError, match="no such file"):
        js.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not written by jaxscale.save"):
        js.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="is not a JSON file"):
        js.load(tmp_path / "broken.json")
    with pytest.raises(ValueError, match=r"save a FitResult as \.json"):
        js.save(chinchilla_fit, tmp_path / "fit.csv")
    with pytest.raises(TypeError, match="save takes a FitResult"):
        js.save({"a": 1}, tmp_path / "x.json")
