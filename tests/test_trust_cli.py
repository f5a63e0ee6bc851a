# ruff: noqa: E501 (the catalogues keep one case per line)
"""Trust at the edges (issue 21): what a careless or hostile user of the command line and of read_runs meets.

The cases are kept as tables, one line each: the CLI's (argv, exit status, first line of stderr, another
fragment of stderr) and the Python API's (call, exception or warning, message fragment). Every CLI case
also checks that no "Traceback" reaches stderr and that no library hint in Python syntax (``fixed=``,
``where=``, ``read_runs(``) does. The CLI runs in-process through ``jaxscale.cli.main(argv)``; Ctrl-C and
concurrent writers need real processes.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from jaxscale import _cli_output
from jaxscale.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
PYTHON_HINT = re.compile(r"\b(fixed|small|where|min_points|weights)=|read_runs\(|isoflop\(|pd\.|np\.|df\[|df\.")


def chinchilla() -> pd.DataFrame:
    t = js.datasets.chinchilla_table()
    keep = t["in_epoch_fit_set"] == 1
    df = pd.DataFrame({"params": t["params_N"], "tokens": t["tokens_D"], "loss": t["loss"]})[keep]
    return df.reset_index(drop=True)


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Every file the catalogue names, written into tmp_path (the working directory of the cases)."""
    monkeypatch.chdir(tmp_path)
    df = chinchilla()
    five = df.iloc[[0, 40, 80, 120, 160]].reset_index(drop=True)  # 5 runs: read, then too few to fit
    five.to_csv("five.csv", index=False)
    df.to_csv("runs.csv", index=False)
    df.to_csv("semi.csv", index=False, sep=";")
    df.to_csv("tab.csv", index=False, sep="\t")
    five.to_csv("decimal_comma.csv", index=False, sep=";", decimal=",")
    five.to_csv("runs.tsv", index=False, sep="\t")
    five.to_csv("runs.txt", index=False, sep=" ")
    Path("mixed.csv").write_text("params;tokens;loss,extra\n1e9;2e10;2.5,1\n")
    five.assign(loss=np.log(five["loss"])).to_csv("logloss.csv", index=False)
    five.assign(loss=100 * five["loss"] / 5).to_csv("percent.csv", index=False)
    five.assign(loss=np.exp(five["loss"])).to_csv("perplexity.csv", index=False)
    five.assign(params=five["params"] / 1e9).to_csv("billions.csv", index=False)
    bad = five.astype({"tokens": object, "loss": object})
    bad.loc[2, "loss"] = np.nan  # line 4 of the file (the header is line 1)
    bad.to_csv("nan.csv", index=False)
    bad = five.copy()
    bad.loc[[1, 3], "tokens"] = [0.0, -1.0]
    bad.to_csv("nonpositive.csv", index=False)
    five.assign(loss=lambda d: d["loss"].where(d.index != 0, -0.3)).to_csv("negloss.csv", index=False)
    five.astype({"params": object}).assign(params=["1.3B", *five["params"][1:]]).to_csv("text.csv", index=False)
    pd.concat([five, five.iloc[[2]]]).to_csv("dup.csv", index=False)
    df.assign(half=["b" if i < 3 else "a" for i in range(len(df))]).to_csv("ragged.csv", index=False)
    df.assign(half=[None if i == 7 else "a" for i in range(len(df))]).to_csv("nogroup.csv", index=False)
    Path("broken.json").write_text("{not json")
    Path("empty.csv").write_text("")
    Path("runs.xlsx").write_text("x")
    Path("folder.csv").mkdir()
    Path("taken.json").write_text("{}\n")
    Path("taken.png").write_bytes(b"not a png")
    return tmp_path


COLS = ["--N", "params", "--D", "tokens"]

# (case id, argv, exit status, fragment of stderr's first line ("" = stderr is empty), fragment elsewhere or None)
CLI_CASES = [
    # --- findings 1 and 6: output files ---
    ("out-is-input", ["fit", "runs.csv", *COLS, "--out", "runs.csv"], 2, "--out 'runs.csv' is the input file", "runs_fit.csv"),
    ("out-is-input-other-spelling", ["fit", "runs.csv", *COLS, "--out", "../{tmp}/runs.csv"], 2, "is the input file 'runs.csv'", None),
    ("out-is-input-even-with-force", ["fit", "runs.csv", *COLS, "--out", "runs.csv", "--force"], 2, "is the input file", None),
    ("out-exists-needs-force", ["fit", "five.csv", *COLS, "--out", "taken.json"], 2, "--out 'taken.json' exists: add --force", None),
    ("plot-exists-needs-force", ["fit", "five.csv", *COLS, "--plot", "taken.png"], 2, "--plot 'taken.png' exists: add --force", None),
    ("out-bad-extension", ["fit", "five.csv", *COLS, "--out", "fits.txt"], 2, "the format follows the file's extension", None),
    ("out-missing-folder", ["fit", "five.csv", *COLS, "--out", "nowhere/fits.csv"], 2, "folder 'nowhere' does not exist", None),
    ("out-is-a-folder", ["fit", "five.csv", *COLS, "--out", "folder.csv", "--force"], 2, "is a folder: give a file name", None),
    ("validate-out-is-input", ["validate", "runs.csv", *COLS, "--train", "params < 1e9", "--out", "runs.csv"], 2, "is the input file", None),
    ("frontier-out-exists", ["frontier", "five.csv", *COLS, "--compute", "1e21", "--out", "taken.json"], 2, "exists: add --force", None),
    # --- finding 7: separators; a file that reads right then has too few runs shows every value parsed ---
    ("semicolon-csv-fits", ["fit", "semi.csv", *COLS, "--json"], 0, "", None),
    ("tab-separated-csv", ["fit", "tab.csv", *COLS], 0, "", None),
    ("semicolon-decimal-comma", ["fit", "decimal_comma.csv", *COLS], 2, "5 runs cannot determine 5 free parameters", None),
    ("tsv-file", ["fit", "runs.tsv", *COLS], 2, "5 runs cannot determine", None),
    ("txt-space-separated", ["fit", "runs.txt", *COLS], 2, "5 runs cannot determine", None),
    ("separator-hint", ["fit", "mixed.csv", *COLS], 2, "missing column(s) ['params', 'tokens', 'loss']", "look like they use ';' between values"),
    # --- finding 7: CLI flags in hints; file lines as row numbers ---
    ("missing-column-says-flags", ["fit", "runs.csv", "--N", "parms", "--D", "tokens"], 2, "missing column(s) ['parms']", "--N COL --D COL --loss COL"),
    ("missing-group-column", ["fit", "runs.csv", *COLS, "--by", "dataset"], 2, "missing group column(s) ['dataset']", "--by COL"),
    ("missing-group-value-line", ["fit", "nogroup.csv", *COLS, "--by", "half"], 2, "group column 'half' has 1 missing values (lines 9 of nogroup.csv)", None),
    ("nan-named-by-line", ["fit", "nan.csv", *COLS], 2, "column 'loss' has 1 missing or non-finite values (lines 4 of nan.csv)", None),
    ("non-positive-by-line", ["fit", "nonpositive.csv", *COLS], 2, "column 'tokens' has 2 non-positive values (lines 3, 5 of nonpositive.csv)", None),
    ("negative-loss-hint", ["fit", "negloss.csv", *COLS], 2, "column 'loss' has 1 non-positive values (lines 2 of", "holds log-losses"),
    ("non-numeric-by-line", ["fit", "text.csv", *COLS], 2, "column 'params' has 1 non-numeric values (lines 2 of text.csv, e.g. '1.3B')", None),
    ("duplicates-by-line", ["fit", "dup.csv", *COLS], 2, "1 line repeats an earlier line", "(2 lines in 1 set: lines 4, 7 of dup.csv): delete the repeated lines, or keep them with --no-duplicate-check"),
    ("too-few-points-fix-flag", ["fit", "five.csv", *COLS], 2, "5 runs cannot determine 5 free parameters", "--fix NAME=VALUE"),
    ("ragged-groups-flags", ["fit", "ragged.csv", *COLS, "--by", "half"], 2, "group ('b',) has 3 runs", "--small report"),
    ("small-needs-by", ["fit", "runs.csv", *COLS, "--small", "report"], 2, "--small decides what happens", None),
    ("where-bad-query", ["fit", "runs.csv", *COLS, "--where", "parms > 1"], 2, "--where 'parms > 1' could not be evaluated", "e.g. --where 'tokens > 1e9'"),
    ("where-selects-nothing", ["fit", "runs.csv", *COLS, "--where", "params > 1e20"], 2, "--where 'params > 1e20' selected no rows", None),
    ("validate-bad-train", ["validate", "runs.csv", *COLS, "--train", "size < 1e9"], 2, "--train 'size < 1e9' could not be evaluated", "e.g. --train"),
    ("law-input-unmapped", ["fit", "runs.csv", *COLS, "--law", "data_constrained"], 2, "needs inputs ['N', 'D', 'U']", "e.g. --U COL"),
    ("input-is-the-loss", ["fit", "runs.csv", "--law", "power", "--x", "loss"], 2, "input x and the loss both read column 'loss'", None),
    ("isoflop-missing-columns", ["isoflop", "runs.csv"], 2, "missing column(s) ['flops']", "--flops --N --D --loss --by --budget"),
    ("fix-unknown-parameter", ["fit", "five.csv", *COLS, "--fix", "C=1"], 2, "has no parameter 'C'", None),
    ("fix-bad-syntax", ["fit", "five.csv", *COLS, "--fix", "E"], 2, "usage: jaxscale fit", "expected NAME=VALUE"),
    ("fix-lets-five-runs-fit", ["fit", "five.csv", *COLS, "--fix", "A=406.4", "B=410.7", "--json"], 0, "", None),
    # --- finding 7: loss scale and units ---
    ("log-loss-warns", ["fit", "logloss.csv", *COLS], 2, "jaxscale: warning: every value of column 'loss' is below 1.5", "5 runs"),
    ("percent-warns", ["fit", "percent.csv", *COLS], 2, "jaxscale: warning: column 'loss' has 5 values above 25", "percentage"),
    ("perplexity-warns", ["fit", "perplexity.csv", *COLS], 2, "values above 25", "perplexity"),
    ("units-warn", ["fit", "billions.csv", *COLS], 2, "jaxscale: warning: every value of column 'params'", "millions or billions"),
    # --- bad files and options the CLI already refused ---
    ("no-such-file", ["fit", "absent.csv", *COLS], 2, "jaxscale: error: no such file: 'absent.csv'", None),
    ("unreadable-format", ["fit", "runs.xlsx", *COLS], 2, "use a .csv, .tsv, .txt, .parquet, .json or .jsonl file", None),
    ("broken-json", ["fit", "broken.json", *COLS], 2, "could not read 'broken.json' as json", None),
    ("empty-csv", ["fit", "empty.csv", *COLS], 2, "could not read 'empty.csv' as csv", None),
    ("data-is-a-folder", ["fit", "folder.csv", *COLS], 2, "it is a folder, not a file", None),
    ("bootstrap-of-one", ["fit", "runs.csv", *COLS, "--resamples", "1"], 2, "--resamples takes 0 (none) or at least 2", None),
    ("level-out-of-range", ["fit", "runs.csv", *COLS, "--resamples", "10", "--level", "95"], 2, "--level must be between 0 and 1", None),
    ("unknown-law", ["fit", "five.csv", *COLS, "--law", "chinchila"], 2, "unknown law 'chinchila'", None),
    ("plot-with-by", ["fit", "runs.csv", *COLS, "--by", "params", "--plot", "fit.png"], 2, "--plot draws one fit", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "status", "first", "elsewhere"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_catalogue(files, capsys, argv, status, first, elsewhere):
    before = sorted(p.name for p in files.iterdir())
    code = _main([a.replace("{tmp}", files.name) for a in argv])
    err = capsys.readouterr().err
    assert code == status, err
    head = err.splitlines()[0] if err else ""
    assert (first in head) if first else head == "", err
    if elsewhere is not None:
        assert elsewhere in err
    assert "Traceback" not in err
    assert not PYTHON_HINT.search(err), f"a Python hint reached the command line: {err}"
    if status != 0:  # a refused or failed command writes nothing, not even a temporary file
        assert sorted(p.name for p in files.iterdir()) == before


def _main(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors: usage line, then the message
        return exc.code


def test_catalogue_is_large_and_ids_unique():
    ids = [c[0] for c in CLI_CASES] + [c[0] for c in API_CASES]
    assert len(ids) == len(set(ids)) and len(CLI_CASES) >= 30


def test_out_equal_to_input_leaves_it_byte_identical(files, capsys):
    data = Path("runs.csv").read_bytes()
    for extra in ([], ["--force"]):
        assert main(["fit", "runs.csv", *COLS, "--out", "runs.csv", *extra]) == 2
        assert Path("runs.csv").read_bytes() == data
    os.symlink("runs.csv", "alias.csv")  # another name for the input is refused too
    assert main(["fit", "runs.csv", *COLS, "--out", "alias.csv", "--force"]) == 2
    assert Path("runs.csv").read_bytes() == data
    assert "is the input file 'runs.csv'" in capsys.readouterr().err


def test_force_replaces_an_existing_file_whole(files, capsys):
    assert main(["fit", "five.csv", *COLS, "--fix", "A=406.4", "B=410.7", "--out", "taken.json", "--force"]) == 0
    doc = json.loads(Path("taken.json").read_text())
    assert doc["params"]["A"] == pytest.approx(406.4, rel=1e-12) and doc["n_points"] == 5
    assert Path("taken.json").stat().st_mode & 0o777 == 0o666 & ~_umask()  # the replaced file's mode, not 0600
    assert sorted(p.name for p in files.iterdir() if p.name.startswith(".")) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_write_that_fails_leaves_no_file(files, monkeypatch):
    def half_then_fail(self, path, **kwargs):
        Path(path).write_text("params,tok")  # a partial write, then the failure
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        _cli_output.write_out(Path("out.csv"), {}, pd.DataFrame({"a": [1]}))
    assert not Path("out.csv").exists()
    assert [p.name for p in files.iterdir() if p.name.startswith(".")] == []
    assert not _cli_output._PENDING


def test_a_file_created_meanwhile_is_not_replaced_without_force(tmp_path):
    """Two commands without --force: the one that finishes second finds the file and leaves it alone."""
    target = tmp_path / "out.json"
    _cli_output.check_path(str(target), _cli_output.OUT_FORMATS, "--out")  # free when the command starts
    target.write_text('{"first": true}\n')  # ... then another command writes it
    with pytest.raises(ValueError, match="was created while this command ran .*--force"):
        _cli_output.write_out(target, {"second": True}, pd.DataFrame())
    assert json.loads(target.read_text()) == {"first": True}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_help_states_the_overwrite_rule(capsys):
    for command in ("fit", "frontier", "validate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--force replace" in text and "the input file never is" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "over an existing file only with --force" in " ".join(capsys.readouterr().out.split())


def test_interrupt_in_process_exits_130_with_one_line(files, capsys, monkeypatch):
    import jaxscale.fit  # noqa: F401  (the commands import fit from its module once the runs are read)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["jaxscale.fit"], "fit", interrupted)
    assert main(["fit", "runs.csv", *COLS, "--out", "fits.csv"]) == 130
    assert capsys.readouterr().err == "jaxscale: interrupted\n"
    assert not Path("fits.csv").exists()


def test_writers_in_threads_leave_one_whole_file(tmp_path):
    """Eight threads replace one path 20 times each with documents of different sizes: it always parses whole."""
    target = tmp_path / "out.json"
    docs = [{"writer": w, "payload": "x" * (1000 * (w + 1))} for w in range(8)]
    seen, stop = [], threading.Event()

    def write(doc):
        for _ in range(20):
            _cli_output.write_out(target, doc, pd.DataFrame(), force=True)

    def read():
        while not stop.is_set():
            if target.exists():
                seen.append(json.loads(target.read_text()))  # never half a document

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(d,)) for d in docs]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert json.loads(target.read_text()) in docs
    assert all(doc in docs for doc in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def command(*args):
    exe = shutil.which("jaxscale")
    return [exe, *args] if exe else [sys.executable, "-m", "jaxscale.cli", *args]


def test_two_commands_writing_one_out_leave_one_complete_result(files):
    """Two fits (different data) race to --out the same JSON with --force: the file is one whole result."""
    chinchilla().iloc[::2].to_csv("half.csv", index=False)
    procs = [
        subprocess.Popen(command("fit", name, *COLS, "--out", "same.json", "--force", "--json"), stdout=subprocess.PIPE, text=True)
        for name in ("runs.csv", "half.csv")
    ]  # fmt: skip
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    written = json.loads(Path("same.json").read_text())
    assert written in outs and {d["n_points"] for d in outs} == {240, 120}
    assert [p.name for p in files.iterdir() if p.name.startswith(".same")] == []


def _interrupt_ready(pid: int) -> bool:
    """Whether the command installed its Ctrl-C handling: its wake-up pipe is open (stdin, stdout are
    /dev/null and stderr is fd 2, so any other pipe is that one)."""
    fds = Path(f"/proc/{pid}/fd")
    links = []
    for fd in fds.iterdir() if fds.exists() else []:
        try:
            links.append((int(fd.name), os.readlink(fd)))
        except OSError:
            continue
    return any(n > 2 and link.startswith("pipe:") for n, link in links)


# Runs argv[1:] with SIGINT's default action; exec keeps the pid, which the test signals.
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to see the command get ready")
@pytest.mark.parametrize("delay", [0.3, 5.0])  # while reading and compiling; while fitting or resampling
def test_ctrl_c_during_bootstrap_exits_130_with_one_line(files, delay):
    """SIGINT to a running bootstrap: status 130, one line on stderr, no traceback, no output file.

    The command starts with SIGINT's default action, as from a terminal: a suite run as a
    shell's background job (``... &``) inherits SIGINT ignored, which the command keeps by
    design (``cli._exit_on_interrupt``), and this test then failed (2026-12-05: SigIgn 0x1001007).
    A small launcher resets the action and execs the command (same pid): a ``preexec_fn`` would
    make subprocess fork this JAX-loaded process, which JAX warns against (CI, 2026-12-05)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_DEFAULT_SIGINT, *command("fit", "runs.csv", *COLS, "--resamples", "100000", "--out", "boot.json")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not _interrupt_ready(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    try:
        err = proc.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:  # say how the command held its signals, and leave no process behind
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        masks = [line for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
        proc.kill()
        proc.communicate()
        pytest.fail(f"SIGINT did not end the command within 60 s; its signal masks: {masks}")
    assert proc.returncode == 130, err
    assert err == "jaxscale: interrupted\n"
    assert [p.name for p in files.iterdir() if "boot" in p.name] == []


# --- the Python API: (case id, call, exception or warning class, message fragment) ---
def frame():
    return pd.DataFrame(
        {"params": [1e8, 3e8, 1e9, 3e9, 1e10, 3e10], "tokens": [2e9, 6e9, 2e10, 6e10, 2e11, 6e11], "loss": [3.4, 3.1, 2.8, 2.6, 2.4, 2.3]}
    )  # fmt: skip


def negative_tokens():
    return frame().assign(tokens=lambda d: d["tokens"].where(~d.index.isin([2, 5]), -1.0))


API_CASES = [
    ("typo-keyword-refused", lambda: js.read_runs(frame(), xx="loss"), TypeError, "unknown keyword(s) ['xx']. Law inputs: N, D"),
    ("keyword-list-has-options", lambda: js.read_runs(frame(), N="params", Dd="tokens"), TypeError, "options: loss, C"),
    ("api-input-is-the-loss", lambda: js.read_runs(frame(), x="loss"), ValueError, "input x and the loss both read column 'loss'"),
    ("column-must-be-string", lambda: js.read_runs(frame(), N=3, D="tokens"), TypeError, "N= names a column and must be a string"),
    ("numpy-array-to-fit", lambda: js.fit(np.ones((6, 3))), TypeError, "got a numpy array of shape (6, 3)"),
    ("list-to-read_runs", lambda: js.read_runs([1, 2, 3]), TypeError, "a pandas DataFrame"),
    ("runs-to-read_runs", lambda: js.read_runs(js.datasets.chinchilla()), TypeError, "already read"),
    ("dataframe-rows-are-labels", lambda: js.read_runs(negative_tokens(), N="params", D="tokens"), ValueError, "(rows 2, 5)"),
    ("dataframe-says-labels", lambda: js.read_runs(negative_tokens(), N="params", D="tokens"), ValueError, "DataFrame's index labels"),
    ("where-stays-python", lambda: js.read_runs(frame(), N="params", D="tokens", where="parms > 1"), ValueError, "where='parms > 1'"),
    ("api-log-loss-warns", lambda: js.read_runs(frame().assign(loss=np.log(frame()["loss"])), N="params", D="tokens"), js.LossScaleWarning, "log of the loss"),
    ("api-percent-warns", lambda: js.read_runs(frame().assign(loss=frame()["loss"] * 20), N="params", D="tokens"), js.LossScaleWarning, "percentage"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "kind", "fragment"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_catalogue(call, kind, fragment):
    if issubclass(kind, Warning):
        with pytest.warns(kind) as record:
            call()
        assert any(fragment in str(w.message) for w in record)
    else:
        with pytest.raises(kind) as info:
            call()
        assert fragment in str(info.value)


def test_files_name_rows_by_line_or_record(tmp_path):
    df = negative_tokens()
    df.to_csv(tmp_path / "runs.csv", index=False)
    df.to_json(tmp_path / "runs.jsonl", orient="records", lines=True)
    where = {"runs.csv": "lines 4, 7 of runs.csv", "runs.jsonl": "lines 3, 6 of runs.jsonl"}
    if _has_parquet():
        df.to_parquet(tmp_path / "runs.parquet")
        where["runs.parquet"] = "records 3, 6 of runs.parquet, counting from 1"
    for name, fragment in where.items():
        with pytest.raises(ValueError, match=re.escape(f"({fragment})")):
            js.read_runs(tmp_path / name, N="params", D="tokens")
    with pytest.raises(ValueError, match=re.escape("(lines 7 of runs.csv)")):  # where= keeps the file's lines
        js.read_runs(tmp_path / "runs.csv", N="params", D="tokens", where="params > 5e9")


def _has_parquet() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def test_custom_inputs_and_registered_laws_are_accepted():
    runs = js.read_runs(frame(), N="params", inputs={"epochs": "tokens"})
    assert runs.inputs == ("N", "epochs")
    assert js.read_runs(frame().rename(columns={"tokens": "U"}), N="params", D="params", U="U").inputs == (
        "N",
        "D",
        "U",
    )


def test_separators_read_the_same_values(tmp_path):
    df = frame()
    ref = js.read_runs(df, N="params", D="tokens")
    for name, kwargs in [("a.csv", {"sep": ";"}), ("b.csv", {"sep": "\t"}), ("c.csv", {"sep": ";", "decimal": ","}),
                         ("d.tsv", {"sep": "\t"}), ("e.txt", {"sep": " "}), ("f.txt", {"sep": ","}), ("g.csv", {"sep": "|"})]:  # fmt: skip
        df.to_csv(tmp_path / name, index=False, **kwargs)
        runs = js.read_runs(tmp_path / name, N="params", D="tokens")
        np.testing.assert_array_equal(runs.x, ref.x, err_msg=name)  # exact: the same decimal strings
        np.testing.assert_array_equal(runs.y, ref.y, err_msg=name)


LOSS_COLUMNS = [
    ("gadre2024_overtraining/models_losses.csv", "loss_c4_val"),
    ("gadre2024_overtraining/models_losses.csv", "loss_openlm"),
    ("gadre2024_overtraining/models_losses.csv", "loss_paloma_dolma_100_programing_languages"),
    ("muennighoff2023_datablations/datablations_runs.csv", "val_loss"),
    ("porian2024_isoflops/isoflop_points.csv", "loss"),
]


@pytest.mark.parametrize(("path", "loss"), LOSS_COLUMNS)
def test_real_losses_do_not_warn(path, loss):
    """The fixtures' losses (1.2-11 nats) and the bundled Chinchilla points (1.8-3.9) raise no LossScaleWarning."""
    df = pd.read_csv(FIXTURES / path)
    n = "params_N" if "params_N" in df else "params"
    with warnings.catch_warnings():
        warnings.simplefilter("error", js.LossScaleWarning)
        runs = js.read_runs(df, N=n, D=n, loss=loss, check_duplicates=False)
    assert runs.n_points == len(df)


def test_bundled_data_and_gemstones_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", js.LossScaleWarning)
        js.read_runs(chinchilla(), N="params", D="tokens")
        gems = next((FIXTURES / "mcleish2025_gemstones").glob("*.jsonl"))
        df = pd.read_json(gems, lines=True)
        losses = [c for c in df.columns if "loss" in c.lower() and pd.api.types.is_numeric_dtype(df[c])]
        assert losses
        for col in losses:
            js.read_runs(df.assign(n=1e9).dropna(subset=[col]), N="n", D="n", loss=col, check_duplicates=False)
