"""The installed ``jaxscale`` command, run for real in a subprocess."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import jaxscale as js


def run(*args):
    exe = shutil.which("jaxscale")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "jaxscale.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


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
    out = run("fit", str(path), "--N", "params", "--D", "tokens", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    api = js.fit(js.datasets.chinchilla())
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
    out = run("fit", str(path), "--bootstrap", "40", "--level", "0.9", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)["bootstrap"]
    assert doc["n"] == 40 and doc["level"] == 0.9 and doc["failed_fraction"] == 0.0
    api = js.bootstrap(js.datasets.chinchilla(), n=40, seed=3, progress=False).ci(0.9)
    for name in ("alpha", "beta", "E", "a"):
        lo, hi = doc["ci"][name]
        assert lo == pytest.approx(api.loc[name, "lower"], rel=1e-9)
        assert hi == pytest.approx(api.loc[name, "upper"], rel=1e-9)
        assert lo < hi
