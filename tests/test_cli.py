"""The installed ``jaxscale`` command, run for real in a subprocess."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import jaxscale as js


def start(*args):
    """Start the command; the test computes its reference in-process meanwhile, then calls ``finish``."""
    exe = shutil.which("jaxscale")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "jaxscale.cli", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc):
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run(*args):
    return finish(start(*args))


def test_example_chinchilla_prints_the_fit():
    out = run("example", "chinchilla")
    assert out.returncode == 0, out.stderr
    assert "converged" in out.stdout and "objective 0.00101827" in out.stdout
    for name in ("E", "A", "B", "alpha", "beta"):
        assert f"    {name}" in out.stdout


def test_fit_json_matches_python_api(tmp_path):
    t = js.datasets.chinchilla_table()
    df = pd.DataFrame({"params": t["params_N"], "tokens": t["tokens_D"], "loss": t["loss"]})[t["in_epoch_fit_set"] == 1]
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    proc = start("fit", str(path), "--N", "params", "--D", "tokens", "--json")
    api = js.fit(js.datasets.chinchilla())
    out = finish(proc)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["converged"] is True and doc["n_points"] == 240
    assert doc["objective"] == pytest.approx(api.objective, rel=1e-9)
    for k, v in api.params.items():
        assert doc["params"][k] == pytest.approx(v, rel=1e-6)


def test_missing_column_exits_nonzero_naming_it(tmp_path):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"N": [1.0], "loss": [2.0]}).to_csv(path, index=False)
    out = run("fit", str(path))
    assert out.returncode == 2
    assert "missing column(s) ['D']" in out.stderr
    assert out.stdout == ""


def test_fit_bootstrap_json_has_intervals(tmp_path):
    t = js.datasets.chinchilla_table()
    keep = t["in_epoch_fit_set"] == 1
    path = tmp_path / "runs.csv"
    pd.DataFrame({"N": t["params_N"][keep], "D": t["tokens_D"][keep], "loss": t["loss"][keep]}).to_csv(
        path, index=False
    )
    out = run("fit", str(path), "--resamples", "40", "--level", "0.9", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)["bootstrap"]
    assert doc["n_resamples"] == 40 and doc["level"] == 0.9 and doc["failed_fraction"] == 0.0
    api = js.bootstrap(js.datasets.chinchilla(), n_resamples=40, seed=3, progress=False).ci(0.9)
    for name in ("alpha", "beta", "E", "a"):
        lo, hi = doc["ci"][name]
        assert lo == pytest.approx(api.loc[name, "lower"], rel=1e-9)
        assert hi == pytest.approx(api.loc[name, "upper"], rel=1e-9)
        assert lo < hi


def grouped_runs(tmp_path):
    """The bundled Chinchilla points in two groups (N below / above 1e9), as a CSV; and the DataFrame."""
    t = js.datasets.chinchilla_table()
    df = pd.DataFrame({"params": t["params_N"], "tokens": t["tokens_D"], "loss": t["loss"]})[t["in_epoch_fit_set"] == 1]
    df["half"] = ["small" if n < 1e9 else "large" for n in df["params"]]
    path = tmp_path / "grouped.csv"
    df.to_csv(path, index=False)
    return path, df


COLUMNS = ("--N", "params", "--D", "tokens")


def test_fit_by_json_matches_fit_groups(tmp_path):
    path, df = grouped_runs(tmp_path)
    proc = start("fit", str(path), *COLUMNS, "--by", "half", "--json", "--out", str(tmp_path / "fits.json"))
    api = js.fit_groups(df, by="half", N="params", D="tokens")
    out = finish(proc)
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    assert json.loads((tmp_path / "fits.json").read_text()) == docs  # --out writes the same document
    assert [d["group"] for d in docs] == [{"half": "large"}, {"half": "small"}]
    for doc, (_, row) in zip(docs, api.iterrows(), strict=True):
        assert doc["law"] == "chinchilla" and doc["converged"] is True and doc["status"] == "converged"
        assert doc["n_points"] == row["n_points"] and "bootstrap" not in doc
        assert doc["objective"] == pytest.approx(row["objective"], rel=1e-9)
        for name in ("E", "A", "B", "alpha", "beta", "a", "b"):
            value = doc["params"][name] if name in doc["params"] else doc["derived"][name]
            assert value == pytest.approx(row[name], rel=1e-9)


def test_fit_by_bootstrap_table_and_csv(tmp_path):
    path, df = grouped_runs(tmp_path)
    csv = tmp_path / "fits.csv"
    proc = start("fit", str(path), *COLUMNS, "--by", "half", "--resamples", "16", "--seed", "2", "--out", str(csv))
    api = js.fit_groups(df, by="half", N="params", D="tokens", n_resamples=16, seed=2)
    out = finish(proc)
    assert out.returncode == 0, out.stderr
    assert "fitted to 2 groups by ['half']: 2 converged" in out.stdout
    assert "95% percentile intervals from 16 resamples per group" in out.stdout
    table = pd.read_csv(csv)
    assert list(table["half"]) == ["large", "small"] and (table["n_resamples"] == 16).all()
    for name in ("alpha", "alpha_lower", "alpha_upper", "beta_lower", "beta_upper", "a_lower", "a_upper"):
        assert table[name].to_numpy() == pytest.approx(api[name].to_numpy(), rel=1e-9)  # CSV keeps 17 digits
    assert (table["alpha_lower"] < table["alpha"]).all() and (table["alpha"] < table["alpha_upper"]).all()


def test_bad_arguments_exit_2_before_fitting(tmp_path):
    path, _ = grouped_runs(tmp_path)
    procs = [
        start("fit", str(path), *COLUMNS, "--out", str(tmp_path / "fits.txt")),
        start("fit", str(path), *COLUMNS, "--by", "dataset", "--json"),
        start("validate", str(path), *COLUMNS, "--train", "size < 1e9"),
    ]
    bad_out, bad_by, bad_train = (finish(p) for p in procs)
    assert bad_out.returncode == 2 and bad_out.stdout == ""
    assert "jaxscale: error: --out" in bad_out.stderr and ".json, .csv" in bad_out.stderr
    assert bad_by.returncode == 2 and bad_by.stdout == ""
    assert "missing group column(s) ['dataset']" in bad_by.stderr
    assert bad_train.returncode == 2 and "--train 'size < 1e9'" in bad_train.stderr and "'size'" in bad_train.stderr


def test_frontier_json_matches_python_api(tmp_path):
    path, _ = grouped_runs(tmp_path)
    proc = start("frontier", str(path), *COLUMNS, "--compute", "1e21", "1e22", "--json")
    res = js.fit(js.datasets.chinchilla())
    api = js.frontier(res, compute=[1e21, 1e22])
    out = finish(proc)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["fit"]["params"]["alpha"] == pytest.approx(res.params["alpha"], rel=1e-9)
    assert [row["compute"] for row in doc["frontier"]] == [1e21, 1e22]
    for row, (_, ref) in zip(doc["frontier"], api.iterrows(), strict=True):
        for name in ("N_opt", "D_opt", "tokens_per_param", "loss"):
            assert row[name] == pytest.approx(ref[name], rel=1e-9)


def test_frontier_bootstrap_csv_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path, _ = grouped_runs(tmp_path)
    csv, png = tmp_path / "frontier.csv", tmp_path / "frontier.png"
    args = ("--compute", "1e21", "1e23", "--resamples", "16", "--level", "0.8", "--out", str(csv), "--plot", str(png))
    out = run("frontier", str(path), *COLUMNS, *args)
    assert out.returncode == 0, out.stderr
    assert "compute-optimal allocation" in out.stdout and "80% percentile intervals over 16 resamples" in out.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(csv)  # the bootstrap itself is checked against the API in test_fit_bootstrap_json_...
    assert list(table["compute"]) == [1e21, 1e23]
    for name in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        assert (table[f"{name}_lower"] <= table[name]).all() and (table[name] <= table[f"{name}_upper"]).all()


def test_fit_plot_with_bootstrap_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    path, _ = grouped_runs(tmp_path)
    png, one = tmp_path / "fit.png", tmp_path / "fit.csv"
    out = run("fit", str(path), *COLUMNS, "--resamples", "16", "--plot", str(png), "--out", str(one))
    assert out.returncode == 0, out.stderr
    data = png.read_bytes()
    assert data[:4] == b"\x89PNG" and len(data) > 10_000
    table = pd.read_csv(one)  # a single fit is a one-row table, with the columns of fit_groups
    assert len(table) == 1 and table["converged"][0] and table["n_resamples"][0] == 16
    assert table["alpha_lower"][0] < table["alpha"][0] < table["alpha_upper"][0]


def test_validate_reports_held_out_errors(tmp_path):
    path, df = grouped_runs(tmp_path)
    doc_path = tmp_path / "validate.json"
    proc = start("validate", str(path), *COLUMNS, "--train", "params < 5e9", "--out", str(doc_path))
    runs = js.read_runs(df, N="params", D="tokens")
    api = js.validate(runs, train=runs.x[:, 0] < 5e9).attrs["summary"]
    out = finish(proc)
    assert out.returncode == 0, out.stderr
    assert "fitted on the 223 runs with params < 5e9, predicting the 17 others" in out.stdout
    assert "held-out |relative error|: mean" in out.stdout
    doc = json.loads(doc_path.read_text())
    assert doc["summary"]["n_train"] == 223 and doc["summary"]["n_held_out"] == 17
    for key in ("mean_abs_rel_error", "max_abs_rel_error", "objective"):
        assert doc["summary"][key] == pytest.approx(api[key], rel=1e-9)
    assert sum(r["split"] == "held_out" for r in doc["runs"]) == 17 and len(doc["runs"]) == 240
