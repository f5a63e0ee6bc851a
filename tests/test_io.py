"""read_runs: clear errors that name the column, the rows and the fix."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxscale as js
from jaxscale.io import repeated_rows


def frame():
    return pd.DataFrame(
        {
            "params": [1e8, 3e8, 1e9, 3e9, 1e10, 3e10, 1e11],
            "tokens": [2e9, 6e9, 2e10, 6e10, 2e11, 6e11, 2e12],
            "loss": [3.4, 3.1, 2.8, 2.6, 2.4, 2.3, 2.2],
        }
    )


def test_reads_dataframe_and_csv(tmp_path):
    df = frame()
    runs = js.read_runs(df, N="params", D="tokens")
    assert runs.inputs == ("N", "D") and runs.n_points == 7
    np.testing.assert_array_equal(runs.x[:, 1], df["tokens"].to_numpy())
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    from_csv = js.read_runs(path, N="params", D="tokens")
    np.testing.assert_array_equal(from_csv.x, runs.x)
    np.testing.assert_array_equal(from_csv.y, runs.y)


def test_missing_column_lists_available_ones():
    with pytest.raises(
        ValueError, match=r"missing column\(s\) \['n_params'\].*available columns: \['params', 'tokens', 'loss'\]"
    ):
        js.read_runs(frame(), N="n_params", D="tokens")


def test_non_positive_values_name_column_and_rows():
    df = frame()
    df.loc[[2, 5], "tokens"] = [0.0, -1.0]
    with pytest.raises(ValueError, match=r"column 'tokens' has 2 non-positive values \(rows 2, 5\).*> 0"):
        js.read_runs(df, N="params", D="tokens")


def test_nan_and_inf_name_column_and_rows():
    df = frame()
    df.loc[3, "loss"] = np.nan
    df.loc[4, "loss"] = np.inf
    with pytest.raises(ValueError, match=r"column 'loss' has 2 missing or non-finite values \(rows 3, 4\)"):
        js.read_runs(df, N="params", D="tokens")


def test_non_numeric_cells_are_named():
    df = frame().astype({"params": object})
    df.loc[1, "params"] = "1.3B"
    with pytest.raises(
        ValueError, match=r"column 'params' has 1 non-numeric values \(rows 1, e.g. '1.3B'\).*DataFrame's index"
    ):
        js.read_runs(df, N="params", D="tokens")


def test_too_few_points_for_the_law():
    runs = js.read_runs(frame().head(5), N="params", D="tokens")
    with pytest.raises(ValueError, match=r"5 runs cannot determine 5 free parameters.*at least 6"):
        js.fit(runs, law="chinchilla")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        js.read_runs(tmp_path / "absent.csv")
    bad = tmp_path / "runs.xlsx"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"use a \.csv, \.tsv, \.txt, \.parquet, \.json or \.jsonl file"):
        js.read_runs(bad)
    broken = tmp_path / "runs.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="could not read .*runs.json"):
        js.read_runs(broken)


def test_law_inputs_must_be_mapped():
    runs = js.read_runs(frame().rename(columns={"params": "x"}), x="x")
    with pytest.raises(ValueError, match=r"law 'chinchilla' needs inputs \['N', 'D'\].*read_runs"):
        js.fit(runs, law="chinchilla")


def test_bad_options_are_rejected():
    runs = js.datasets.chinchilla()
    with pytest.raises(ValueError, match="unknown law 'chinchila'"):
        js.fit(runs, law="chinchila")
    with pytest.raises(ValueError, match="unknown loss_fn 'l1'"):
        js.fit(runs, loss_fn="l1")
    with pytest.raises(ValueError, match="has no parameter 'C'"):
        js.fit(runs, fixed={"C": 1.0})
    with pytest.raises(ValueError, match="weights must be 240"):
        js.fit(runs, weights=np.ones(3))


def test_compute_column_derives_tokens():
    df = frame().assign(flops=lambda d: 6.0 * d["params"] * d["tokens"]).drop(columns="tokens")
    runs = js.read_runs(df, N="params", C="flops")
    assert runs.inputs == ("N", "D") and runs.columns == ("params", "flops/(6*params)")
    expected = df["flops"].to_numpy() / (6.0 * df["params"].to_numpy())
    np.testing.assert_allclose(runs.x[:, 1], expected, rtol=1e-12, atol=0)
    other = js.read_runs(df, N="params", C="flops", flops_per_token=2.0)
    np.testing.assert_allclose(other.x[:, 1], 3.0 * expected, rtol=1e-12, atol=0)
    assert other.columns[1] == "flops/(2*params)"
    with pytest.raises(ValueError, match=r"both D='tokens' and C='flops'.*one of D .* or C"):
        js.read_runs(frame().assign(flops=1e20), N="params", D="tokens", C="flops")
    with pytest.raises(ValueError, match=r"C='flops' needs the parameter count.*N='col'"):
        js.read_runs(df, x="params", C="flops")
    bad = df.copy()
    bad.loc[4, "flops"] = -1.0
    with pytest.raises(ValueError, match=r"column 'flops' has 1 non-positive values \(rows 4\)"):
        js.read_runs(bad, N="params", C="flops")


def test_where_selects_rows_and_keeps_labels():
    df = frame()
    runs = js.read_runs(df, N="params", D="tokens", where="params >= 1e9")
    assert runs.n_points == 5 and list(runs.rows) == [2, 3, 4, 5, 6]
    masked = js.read_runs(df, N="params", D="tokens", where=df["params"] >= 1e9)
    np.testing.assert_array_equal(masked.x, runs.x)
    df.loc[0, "loss"] = np.nan  # dropped by where=, so no error
    js.read_runs(df, N="params", D="tokens", where=df["loss"].notna())
    df.loc[5, "loss"] = -1.0  # labels in later errors are the original ones
    with pytest.raises(ValueError, match=r"column 'loss' has 1 non-positive values \(rows 5\)"):
        js.read_runs(df, N="params", D="tokens", where=np.arange(7) >= 1)
    with pytest.raises(ValueError, match=r"where='parms > 1' could not be evaluated.*pandas query"):
        js.read_runs(frame(), N="params", D="tokens", where="parms > 1")
    with pytest.raises(ValueError, match=r"where='params > 1e20' selected no rows"):
        js.read_runs(frame(), N="params", D="tokens", where="params > 1e20")
    with pytest.raises(ValueError, match=r"where= mask must be boolean"):
        js.read_runs(frame(), N="params", D="tokens", where=np.ones(7))


def test_duplicated_rows_are_named():
    df = pd.concat([frame(), frame().iloc[[1, 4]]], ignore_index=True)
    with pytest.raises(
        ValueError,
        match=r"2 rows repeat earlier rows in every column \['params', 'tokens', 'loss'\] \(4 rows in 2 sets: "
        r"rows 1, 4, 7, 8\).*drop_duplicates.*check_duplicates=False",
    ):
        js.read_runs(df, N="params", D="tokens")
    seeds = pd.concat([frame(), frame().assign(loss=lambda d: d["loss"] + 0.01)], ignore_index=True)
    assert js.read_runs(seeds, N="params", D="tokens").n_points == 14


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, -0.0, 1.5, 2.0, float("nan"), 1e300]),
            st.integers(0, 2),
            st.sampled_from(["x", "y", None]),
            st.sampled_from([1, 1.0, "1", True, None]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_repeated_rows_are_pandas_duplicates(rows):
    # The hashed check finds exactly pandas' repeats (NaN equal to NaN, -0.0 to 0.0, 1 to 1.0 in an
    # object column), whatever the columns' kinds.
    df = pd.DataFrame(rows, columns=["f", "i", "s", "o"])
    for cols in (["f"], ["f", "i"], ["s", "o"], ["f", "i", "s", "o"]):
        expected = df.duplicated(subset=cols, keep=False).to_numpy()
        np.testing.assert_array_equal(repeated_rows(df, cols), expected)


def test_small_sizes_warn_about_units():
    df = frame().assign(params=lambda d: d["params"] / 1e9)  # in billions
    with pytest.warns(js.UnitsWarning, match=r"column 'params' \(input N\).*millions or billions.*\* 1e9"):
        runs = js.read_runs(df, N="params", D="tokens")
    np.testing.assert_array_equal(runs.x[:, 0], df["params"].to_numpy())
    assert issubclass(js.UnitsWarning, UserWarning)
    with pytest.warns(js.UnitsWarning, match=r"column 'tokens' \(input D\)"):
        js.read_runs(frame().assign(tokens=lambda d: d["tokens"] / 1e9), N="params", D="tokens")


def test_groups_and_min_points():
    df = pd.concat([frame().assign(data="c4"), frame().head(3).assign(data="web", loss=3.5)], ignore_index=True)
    runs = js.read_runs(df, N="params", D="tokens", group="data")
    assert runs.groups.dtype == object and runs.groups.shape == (10,)
    assert list(runs.groups) == [("c4",)] * 7 + [("web",)] * 3
    two = js.read_runs(df.assign(k=1), N="params", D="tokens", group=["data", "k"], min_points=3)
    assert two.groups[-1] == ("web", 1)
    with pytest.raises(ValueError, match=r"group \('web',\) has 3 runs; law needs at least 6"):
        js.read_runs(df, N="params", D="tokens", group="data", min_points=6)
    with pytest.raises(ValueError, match=r"group \('c4',\) has 7 runs; group \('web',\) has 3 runs; .*at least 8"):
        js.read_runs(df, N="params", D="tokens", group="data", min_points=8)
    with pytest.raises(ValueError, match=r"^7 runs; law needs at least 8"):
        js.read_runs(frame(), N="params", D="tokens", min_points=8)
    assert js.read_runs(frame(), N="params", D="tokens").groups is None
    with pytest.raises(ValueError, match=r"missing group column\(s\) \['dataset'\]"):
        js.read_runs(df, N="params", D="tokens", group="dataset")


_BAD_CELLS = [np.nan, np.inf, -np.inf, -1.0, 0.0, "abc", None, "1e9x"]


@settings(max_examples=60, deadline=None)
@given(
    n_rows=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
    hits=st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from(["params", "tokens", "loss"]), st.sampled_from(_BAD_CELLS)),
        max_size=4,
    ),
)
def test_read_runs_returns_clean_runs_or_value_error(n_rows, seed, hits):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "params": 10 ** rng.uniform(5, 11, n_rows),
            "tokens": 10 ** rng.uniform(5, 12, n_rows),
            "loss": rng.uniform(1.5, 4.0, n_rows),
        }
    ).astype(object)
    for row, col, value in hits:
        if row < n_rows:
            df.loc[row, col] = value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", js.UnitsWarning)
            runs = js.read_runs(df, N="params", D="tokens")
    except ValueError:
        return
    assert runs.n_points == n_rows
    for arr in (runs.x, runs.y):
        assert arr.dtype == np.float64 and np.all(np.isfinite(arr)) and np.all(arr > 0)
