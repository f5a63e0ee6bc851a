"""Custom laws and the command line (issue 24, item 6).

``--no-duplicate-check`` and the duplicate message's count of surplus copies; ``--law module:function``
and ``--law file.py:function`` (``get_law`` in Python); ``--where`` errors that name the expression and the
columns; input errors said before JAX is imported.
"""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from jaxscale.cli import _parser, main
from jaxscale.io import select_rows

PYTHON_HINT = re.compile(r"\b(check_duplicates|where)=|read_runs\(|pd\.|df\.")
COLS = ["--N", "params", "--D", "tokens"]


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "params": [1e8, 3e8, 1e9, 3e9, 1e10, 3e10, 1e11],
            "tokens": [2e9, 6e9, 2e10, 6e10, 2e11, 6e11, 2e12],
            "loss": [3.4, 3.1, 2.8, 2.6, 2.4, 2.3, 2.2],
        }
    )


def cli(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert not PYTHON_HINT.search(err), f"a Python hint reached the command line: {err}"
    return code, out, err


# --- duplicates ---------------------------------------------------------------------------------------------


def test_duplicate_message_counts_the_surplus_copies():
    df = pd.concat([frame(), frame().iloc[[1, 1, 4]]], ignore_index=True)  # row 1 three times, row 4 twice
    with pytest.raises(ValueError) as err:
        js.read_runs(df, N="params", D="tokens")
    message = str(err.value)
    assert message.startswith(
        "3 rows repeat earlier rows in every column ['params', 'tokens', 'loss'] (5 rows in 2 sets: rows 1, 4, 7, 8, 9)"
    ), message
    assert "df.drop_duplicates(subset=['params', 'tokens', 'loss'])" in message
    assert "read_runs(..., check_duplicates=False)" in message
    assert js.read_runs(df, N="params", D="tokens", check_duplicates=False).n_points == 10
    one = pd.concat([frame(), frame().iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"^1 row repeats an earlier row .*\(2 rows in 1 set: rows 2, 7\)"):
        js.read_runs(one, N="params", D="tokens")


def test_no_duplicate_check_flag_on_the_commands_that_read_runs():
    for argv in (["fit", "r.csv"], ["frontier", "r.csv", "--compute", "1e21"], ["validate", "r.csv", "--train", "N<1"]):
        assert _parser().parse_args(argv).duplicate_check is True, argv
        assert _parser().parse_args([*argv, "--no-duplicate-check"]).duplicate_check is False, argv


def test_cli_duplicates_refused_with_the_flag_as_fix_then_fitted_with_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    t = js.datasets.chinchilla_table()
    keep = t["in_epoch_fit_set"] == 1
    five = pd.DataFrame({"params": t["params_N"], "tokens": t["tokens_D"], "loss": t["loss"]})[keep]
    five = five.iloc[[0, 40, 80, 120, 160]].reset_index(drop=True)
    pd.concat([five, five.iloc[[2, 2]]]).to_csv("dup.csv", index=False)  # lines 4, 7 and 8 are one set
    code, _, err = cli(["fit", "dup.csv", *COLS], capsys)
    assert code == 2
    assert err.splitlines()[0] == (
        "jaxscale: error: 2 lines repeat earlier lines in every column ['params', 'tokens', 'loss'] (3 lines in 1 "
        "set: lines 4, 7, 8 of dup.csv): delete the repeated lines, or keep them with --no-duplicate-check if the "
        "repeats are meant (runs that differ only in loss, e.g. seeds, are fine)"
    )
    fix = ["--fix", "A=406.4", "B=410.7", "--json"]
    code, out, err = cli(["fit", "dup.csv", *COLS, *fix, "--no-duplicate-check"], capsys)
    assert code == 0, err
    assert json.loads(out)["n_points"] == 7  # every line, the copies included
    # --by reads the runs once, with the same check: past it, the groups' own error (too few runs) comes
    pd.concat([five.iloc[:4], five.iloc[[2]]]).assign(half="a").to_csv("dup_by.csv", index=False)
    code, _, err = cli(["fit", "dup_by.csv", *COLS, "--by", "half"], capsys)
    assert code == 2 and "--no-duplicate-check" in err
    code, _, err = cli(["fit", "dup_by.csv", *COLS, "--by", "half", "--no-duplicate-check"], capsys)
    assert code == 2 and "group ('a',) has 5 runs" in err and "repeat" not in err


# --- --law module:function ----------------------------------------------------------------------------------

LAW_FILE = """
import jaxscale as js

def power_n():
    return js.make_law(
        lambda p, x: p["E"] + p["A"] / x["N"] ** p["alpha"],
        params=("E", "A", "alpha"), inputs=("N",), positive=("E", "A"), name="power_n",
        grid={"E": [1.0, 2.0], "A": [100.0, 1000.0], "alpha": [0.2, 0.4]},
    )

LAW = power_n()
NOT_A_LAW = 3

def needs_args(p, x):
    return p["E"]

def returns_int():
    return 1

def raises():
    raise RuntimeError("boom")
"""


@pytest.fixture
def law_file(tmp_path):
    path = tmp_path / "issue24_laws.py"
    path.write_text(textwrap.dedent(LAW_FILE))
    return path


def test_get_law_loads_a_file_or_module_law(law_file, monkeypatch):
    law = js.get_law(f"{law_file}:power_n")
    assert isinstance(law, js.Law) and law.name == "power_n" and law.natural == ("E", "A", "alpha")
    assert js.get_law(f"{law_file}:power_n") is law  # loaded once: fits with the same spec share kernels
    assert js.get_law(f"{law_file}:LAW").name == "power_n"
    assert js.get_law("jaxscale.laws:POWER") is js.get_law("power")
    monkeypatch.syspath_prepend(str(law_file.parent))
    assert js.get_law("issue24_laws:LAW").params == ("log_E", "log_A", "alpha")
    assert js.get_law("issue24_laws:power_n").inputs == ("N",)


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("nope", r"file 'issue24_laws.py' has no 'nope'; its Law objects: \['LAW'\], its functions: \['power_n', "),
        (
            "NOT_A_LAW",
            r"is a value of type int; give a Law, or a function of no arguments returning one \(e.g. one that calls ",
        ),
        ("needs_args", r"takes arguments \(p, x\); give a Law, or a function of no arguments"),
        ("returns_int", r"returns_int\(\) returned a value of type int; give a Law"),
        ("raises", r"calling raises\(\) raised RuntimeError: boom. Fix it there"),
    ],
)
def test_a_law_spec_that_is_not_a_law_says_why(law_file, attr, message):
    with pytest.raises(ValueError, match=rf"^law '{re.escape(str(law_file))}:{attr}'(: | ){message}"):
        js.get_law(f"{law_file}:{attr}")


def test_a_law_spec_that_does_not_load_says_why(tmp_path, monkeypatch):
    with pytest.raises(
        ValueError, match=r"no module named 'no_such_module_24' on the Python path.*no_such_module_24\.py:f"
    ):
        js.get_law("no_such_module_24:f")
    with pytest.raises(ValueError, match=r"no such file 'absent\.py': give the path to a \.py file"):
        js.get_law("absent.py:f")
    (tmp_path / "broken24.py").write_text("def f(:\n")
    with pytest.raises(ValueError, match=r"running broken24\.py raised SyntaxError"):
        js.get_law(f"{tmp_path / 'broken24.py'}:f")
    (tmp_path / "imports24.py").write_text("import not_installed_24\n")
    with pytest.raises(
        ValueError, match=r"running imports24\.py raised ModuleNotFoundError: No module named 'not_inst"
    ):
        js.get_law(f"{tmp_path / 'imports24.py'}:f")
    monkeypatch.syspath_prepend(str(tmp_path))  # a module found, whose own import fails, is not "no module named"
    with pytest.raises(
        ValueError, match=r"importing module 'imports24' raised ModuleNotFoundError: No module named 'not_"
    ):
        js.get_law("imports24:f")
    with pytest.raises(ValueError, match=r"law 'laws\.py:': a law of your own is 'module:name' or"):
        js.get_law("laws.py:")
    with pytest.raises(ValueError, match=r"unknown law 'chinchila'.*or a law of your own as 'module:function'"):
        js.get_law("chinchila")


def test_cli_fits_a_law_from_a_module_in_the_working_directory(tmp_path, monkeypatch, capsys):
    """E + A / N^alpha on exact points: the fit recovers the parameters that made them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "issue24_cli_laws.py").write_text(textwrap.dedent(LAW_FILE))
    n = np.geomspace(1e7, 1e11, 9)
    pd.DataFrame({"params": n, "tokens": 20 * n, "loss": 1.7 + 400.0 / n**0.3}).to_csv("runs.csv", index=False)
    path = list(sys.path)
    code, out, err = cli(["fit", "runs.csv", *COLS, "--law", "issue24_cli_laws:power_n", "--json"], capsys)
    assert code == 0, err
    assert sys.path == path  # the working directory was searched for the module, then left off sys.path again
    doc = json.loads(out)
    assert doc["law"] == "power_n"
    for name, truth in (("E", 1.7), ("A", 400.0), ("alpha", 0.3)):
        assert doc["params"][name] == pytest.approx(truth, rel=1e-6), name
    code, _, err = cli(["fit", "runs.csv", *COLS, "--law", "issue24_cli_laws.py:power"], capsys)
    assert code == 2
    assert err.startswith("jaxscale: error: law 'issue24_cli_laws.py:power': file 'issue24_cli_laws.py' has no 'power'")


# --- --where ------------------------------------------------------------------------------------------------


def test_where_errors_name_the_expression_the_problem_and_the_columns():
    df = frame().assign(**{"data set": "c4"})
    cases = [
        ("params = 1e9", "a single '=' assigns rather than compares; to compare, write where='params == 1e9'"),
        (
            "`data set` == 'a=b' and params=1e9",
            "a single '=' assigns rather than compares; to compare, write "
            "where=\"`data set` == 'a=b' and params==1e9\"",
        ),
        ("parms > 1e9", "it names 'parms', which is not a column (check its spelling)"),
        ("params > 1e9 && tokens > 1", "'&&' and '||' are not Python: join conditions with 'and' and 'or'"),
        ("params >", "it is not a valid expression (invalid syntax)"),
        ("params", "it does not give True or False for each row: write a condition"),
    ]
    for where, problem in cases:
        with pytest.raises(ValueError) as err:
            select_rows(df, where)
        message = str(err.value)
        assert message.startswith(f"where={where!r} could not be evaluated: {problem}. "), message
        assert "The columns are ['params', 'tokens', 'loss', 'data set']" in message
        assert "(a name such as 'data set' goes in backticks: `data set` > 1)" in message
    with pytest.raises(ValueError, match=r"could not be evaluated: a single '='.*'params == 1e9'.*columns are \["):
        js.read_runs(frame(), N="params", D="tokens", where="params = 1e9")


def test_cli_where_errors_use_the_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    frame().to_csv("runs.csv", index=False)
    code, _, err = cli(["fit", "runs.csv", *COLS, "--where", "params = 1e9"], capsys)
    assert code == 2
    assert err.splitlines()[0] == (
        "jaxscale: error: --where 'params = 1e9' could not be evaluated: a single '=' assigns rather than compares; "
        "to compare, write --where 'params == 1e9'. The columns are ['params', 'tokens', 'loss']; use a pandas query "
        "over them, e.g. --where 'tokens > 1e9'"
    )
    code, _, err = cli(["validate", "runs.csv", *COLS, "--train", "params = 1e9"], capsys)
    assert code == 2 and "to compare, write --train 'params == 1e9'" in err


# --- no JAX before the input is read ------------------------------------------------------------------------


def test_input_errors_are_said_before_jax_is_imported(tmp_path):
    """The installed command's path (main() owning the process): reading and its errors need only pandas."""
    frame().to_csv(tmp_path / "runs.csv", index=False)
    pd.concat([frame(), frame().iloc[[1]]]).to_csv(tmp_path / "dup.csv", index=False)
    code = textwrap.dedent(
        """
        import sys
        import jaxscale.cli as cli
        codes = []
        for argv in (["fit", "missing.csv"], ["fit", "runs.csv", "--N", "params", "--D", "tokens", "--where", "N = 1"],
                     ["frontier", "dup.csv", "--N", "params", "--D", "tokens", "--compute", "1e21"],
                     ["validate", "runs.csv", "--N", "parms", "--train", "N < 1"]):
            sys.argv = ["jaxscale", *argv]
            codes.append(cli.main())
        print(codes, "jax" in sys.modules, "jaxscale.laws" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2, 2, 2, 2] False False", done.stderr
    errors = done.stderr.splitlines()
    assert len(errors) == 4 and all(line.startswith("jaxscale: error: ") for line in errors), errors


# --- --weights ----------------------------------------------------------------------------------------------


def test_cli_weights_column_equals_python_weights(tmp_path, monkeypatch, capsys):
    """--weights COL: the fit, a group's fit and a frontier are Python's with weights=that column."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    n = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 24))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), 24))
    loss = (1.8 + 400 / n**0.34 + 2000 / d**0.37) * np.exp(0.02 * rng.normal(size=24))
    w = rng.choice([0.0, 1.0, 2.0], size=24)
    df = pd.DataFrame({"params": n, "tokens": d, "loss": loss, "w": w, "half": np.arange(24) % 2})
    df.to_csv("runs.csv", index=False)
    code, out, err = cli(["fit", "runs.csv", *COLS, "--weights", "w", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    want = js.fit(js.read_runs(df, N="params", D="tokens"), weights=w)
    assert doc["weights"] == "w"
    assert doc["n_points"] == np.count_nonzero(w)
    for name, value in want.params.items():
        assert doc["params"][name] == pytest.approx(value, rel=1e-9), name
    code, out, err = cli(["fit", "runs.csv", *COLS, "--weights", "w", "--where", "half == 1", "--by", "half"], capsys)
    assert code == 0, err
    part = df[df["half"] == 1]
    want = js.fit(js.read_runs(part, N="params", D="tokens"), weights=part["w"].to_numpy(), n_refine=8)
    assert f"{want.params['alpha']:.4g}" in out
    code, out, err = cli(["frontier", "runs.csv", *COLS, "--weights", "w", "--compute", "1e21", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["fit"]["params"]["alpha"] == pytest.approx(js.fit(
        js.read_runs(df, N="params", D="tokens"), weights=w).params["alpha"], rel=1e-9)  # fmt: skip
    df.loc[3, "w"] = -2.0
    df.to_csv("bad.csv", index=False)
    code, _, err = cli(["fit", "bad.csv", *COLS, "--weights", "w"], capsys)
    assert code == 2
    assert "column 'w' has 1 weights that are missing, infinite or negative (lines 5 of bad.csv" in err


# --- posterior --------------------------------------------------------------------------------------------


def test_cli_posterior_reports_json_and_a_failing_status(tmp_path, monkeypatch, capsys):
    pytest.importorskip("blackjax")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    n = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 40))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), 40))
    loss = (1.8 + 400 / n**0.34 + 2000 / d**0.37) * np.exp(0.01 * rng.normal(size=40))
    pd.DataFrame({"params": n, "tokens": d, "loss": loss}).to_csv("runs.csv", index=False)
    args = ["posterior", "runs.csv", *COLS, "--chains", "4", "--draws", "500", "--warmup", "500"]
    code, out, err = cli([*args, "--json", "--compute", "1e22", "--out", "post.json"], capsys)
    doc = json.loads(out)
    assert code == (0 if doc["converged"] else 1), err
    assert doc["likelihood"] == "gaussian" and doc["diagnostics"]["chains"] == 4
    lo, hi = doc["intervals"]["alpha"]["lower"], doc["intervals"]["alpha"]["upper"]
    assert lo < 0.34 < hi
    assert "tokens_per_param@1e+22" in doc["intervals"]
    assert json.loads((tmp_path / "post.json").read_text())["status"] == doc["status"]
    # Too few draws for the ESS threshold (100 per chain): reported, exit status 1.
    code, out, _ = cli(["posterior", "runs.csv", *COLS, "--chains", "2", "--draws", "50", "--warmup", "50"], capsys)
    assert code == 1
    assert "NOT CONVERGED" in out and "ESS" in out
    code, _, err = cli(["posterior", "runs.csv", *COLS, "--chains", "1"], capsys)
    assert code == 2 and "--chains takes at least 2" in err


def test_cli_posterior_by_groups_matches_python_and_reports_each_group(tmp_path, monkeypatch, capsys):
    pytest.importorskip("blackjax")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    frames = []
    for name, alpha in (("a", 0.30), ("b", 0.38)):
        n = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 30))
        d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), 30))
        loss = (1.8 + 400 / n**alpha + 2000 / d**0.37) * np.exp(0.01 * rng.normal(size=30))
        frames.append(pd.DataFrame({"dataset": name, "params": n, "tokens": d, "loss": loss}))
    pd.concat(frames).to_csv("runs.csv", index=False)
    sizes = ["--chains", "2", "--draws", "60", "--warmup", "60"]
    code, out, err = cli(["posterior", "runs.csv", *COLS, *sizes, "--by", "dataset", "--json"], capsys)
    docs = json.loads(out)
    assert [doc["group"] for doc in docs] == [{"dataset": "a"}, {"dataset": "b"}]
    assert code == (0 if all(doc["converged"] for doc in docs) else 1), err
    # The same numbers as posterior(by=) in Python, group by group.
    runs = js.read_runs("runs.csv", N="params", D="tokens", group=["dataset"])
    posts = js.posterior(runs, by=["dataset"], chains=2, draws=60, warmup=60)
    for doc, post in zip(docs, posts.values(), strict=True):
        assert doc["intervals"]["alpha"]["median"] == pytest.approx(float(post.ci().loc["alpha", "median"]), rel=1e-12)
        assert doc["status"] == post.status
    # Text: one line per group with its status; CSV: the group column on every quantity's row.
    code, out, _ = cli(["posterior", "runs.csv", *COLS, *sizes, "--by", "dataset", "--out", "post.csv"], capsys)
    assert code == 1 and "NOT CONVERGED in 2 of 2 groups" in out  # 60 draws: ESS < 400 in both
    assert re.search(r"^\s*a\s+0\.\d+", out, re.M) and re.search(r"^\s*b\s+0\.\d+", out, re.M)
    table = pd.read_csv("post.csv")
    assert list(table.columns[:2]) == ["dataset", "quantity"] and set(table["dataset"]) == {"a", "b"}
    assert table.loc[(table["dataset"] == "b") & (table["quantity"] == "alpha"), "median"].item() == pytest.approx(
        docs[1]["intervals"]["alpha"]["median"], rel=1e-12
    )
