"""read_runs: clear errors that name the column, the rows and the fix."""

import numpy as np
import pandas as pd
import pytest

import jaxscale as js


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
    with pytest.raises(ValueError, match=r"column 'params' has 1 non-numeric values \(rows \[1\], e.g. '1.3B'\)"):
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
    with pytest.raises(ValueError, match=r"use a \.csv, \.parquet, \.json or \.jsonl file"):
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
    with pytest.raises(ValueError, match="unknown loss"):
        js.fit(runs, loss="l1")
    with pytest.raises(ValueError, match="has no parameter 'C'"):
        js.fit(runs, fixed={"C": 1.0})
    with pytest.raises(ValueError, match="weights must be 240"):
        js.fit(runs, weights=np.ones(3))
