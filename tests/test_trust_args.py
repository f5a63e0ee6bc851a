"""Trust at the boundary: edited saves are refused, bad arguments and weights are named.

Three catalogues, one line per case: a saved file edited then loaded (``SAVES``), a public
call with a bad argument (``ARGUMENTS``), per-run weights (``WEIGHTS``). Each case gives the
exception and a fragment of its message, or a check of the correct result. Every refused
call must fail before a kernel runs: ``no_kernels`` replaces the solver and the frontier's
allocation with functions that fail the test if called.

The catalogues are tables, one case a line, so their lines run past 120 characters.
"""
# ruff: noqa: E501

import importlib
import json
import types

import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from jaxscale import batches
from jaxscale.saving import content_hash

RUNS = js.datasets.chinchilla()  # 240 runs; kernels compiled once for its bucket and n_refine=4
FAST = {"n_refine": 4}
N = RUNS.n_points
DROP = object()  # an edit that deletes the field


@pytest.fixture(scope="module")
def ctx():
    fit = js.fit(RUNS, **FAST)
    assert fit.converged
    # A bootstrap built from the fit (the file format is what is tested, not resampling).
    draws = np.array([list(fit.params.values())] * 4) * np.array([[1.0], [1.01], [0.99], [1.02]])
    boot = js.BootstrapResult(fit.law, fit, draws, np.full(4, fit.objective), np.zeros(4, np.int32), 7, None)
    unid = fit._replace(
        status="unidentified", unidentified=("alpha", "beta"), unidentified_reason="one D", condition=1e9
    )
    table = pd.DataFrame({"group": ["a", "b"], "alpha": [0.3, float("nan")], "steps": [10, 12], "ok": [True, False]})
    return types.SimpleNamespace(fit=fit, boot=boot, table=table, unid=unid)


@pytest.fixture
def no_kernels(monkeypatch):
    def kernel(*args, **kwargs):
        raise AssertionError("a kernel ran before the arguments were checked")

    monkeypatch.setattr(batches, "solve", kernel)
    # jaxscale.frontier is the function; its module holds the numeric allocation kernel.
    monkeypatch.setattr(importlib.import_module("jaxscale.frontier"), "allocate", kernel)


# ---- Saved files -------------------------------------------------------------------------


def edit(doc, dotted, value):
    *head, last = dotted.split(".")
    for key in head:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    if value is DROP:
        del doc[last]
    elif isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


def nan_params(doc):
    """A fit whose parameters are NaN (params and theta agree), hashed again."""
    doc["params"]["alpha"], doc["theta"][3] = "nan", "nan"


def as_v1(doc):
    """A file as the previous jaxscale wrote it: version 1, no hash (nor inert, before it was recorded)."""
    doc["version"] = 1
    del doc["sha256"], doc["inert"]


def loads_fit(res):
    return isinstance(res, js.FitResult) and res.converged and res.params["alpha"] > 0


# (case id, what was saved, edits: {field: value} or a function of the document, hash it
#  again (as someone would who knows the format), expected exception or a check of the
#  result, message fragment)
SAVES = [
    ("params-disagree-theta", "fit", {"params.alpha": 0.9}, False, ValueError, "field 'params' should equal law.to_natural(theta)"),
    ("params-disagree-rehashed", "fit", {"params.alpha": 0.9}, True, ValueError, "they differ at alpha is 0.9 there, 0.347"),
    ("theta-edited", "fit", {"theta.3": 0.9}, True, ValueError, "field 'params' should equal"),
    ("steps-edited", "fit", {"steps": 3}, False, ValueError, "does not match its field 'sha256'"),
    ("objective-edited", "fit", {"objective": 1e-9}, False, ValueError, "was changed after it was saved"),
    ("nan-params-converged", "fit", nan_params, True, ValueError, "non-finite ['alpha'] in a fit saved as converged"),
    ("nan-params-nonfinite", "fit", lambda d: (nan_params(d), edit(d, "status", "nonfinite")), True, lambda r: r.status == "nonfinite" and np.isnan(r.params["alpha"]), ""),
    ("version-missing", "fit", {"version": DROP}, True, ValueError, "field 'version' should be an integer format version [1, 2]; it is missing"),
    ("version-string", "fit", {"version": "2"}, True, ValueError, "field 'version' should be an integer format version [1, 2]; got \"2\""),
    ("version-bool", "fit", {"version": True}, True, ValueError, "field 'version' should be an integer"),
    ("version-newer", "fit", {"version": 3}, True, ValueError, "written by a newer jaxscale (format 3)"),
    ("version-zero", "fit", {"version": 0}, True, ValueError, "field 'version' should be one of [1, 2]; got 0"),
    ("theta-missing", "fit", {"theta": DROP}, True, ValueError, "field 'theta' is missing (expected a list of numbers)"),
    ("theta-short", "fit", {"theta": [1.0, 2.0, 3.0, 0.3]}, True, ValueError, "field 'theta' should hold 5 numbers"),
    ("params-name-missing", "fit", {"params.beta": DROP}, True, ValueError, "field 'params' should name the parameters of law 'chinchilla', ['E', 'A', 'B', 'alpha', 'beta']; got ['A', 'B', 'E', 'alpha']"),
    ("kind-fit-as-bootstrap", "fit", {"kind": "bootstrap"}, True, ValueError, "field 'point' is missing"),
    ("kind-fit-as-table", "fit", {"kind": "table"}, True, ValueError, "field 'law' is not one save writes"),
    ("kind-unknown", "fit", {"kind": "model"}, True, ValueError, "field 'kind' should be one of ['fit', 'bootstrap', 'posterior', 'table']"),
    ("extra-field", "fit", {"note": "hi"}, True, ValueError, "field 'note' is not one save writes"),
    ("steps-string", "fit", {"steps": "194"}, True, ValueError, "field 'steps' should be an integer >= 0; got \"194\""),
    ("status-unknown", "fit", {"status": "great"}, True, ValueError, "field 'status' should be one of"),
    ("loss-unknown", "fit", {"loss": "l1"}, True, ValueError, "field 'loss' should be one of ['huber', 'squared']"),
    ("fixed-unknown-name", "fit", {"fixed": ["gamma"]}, True, ValueError, "field 'fixed' should name parameters of"),
    ("hash-missing", "fit", {"sha256": DROP}, False, ValueError, "field 'sha256' should be the SHA-256 (64 hex digits) that save writes; it is missing"),
    ("hash-not-string", "fit", {"sha256": 5}, False, ValueError, "field 'sha256' should be the SHA-256"),
    ("v1-no-hash-loads", "fit", as_v1, False, loads_fit, ""),
    ("v1-with-inert-loads", "fit", lambda d: (edit(d, "version", 1), edit(d, "sha256", DROP)), False, loads_fit, ""),
    ("v1-params-edited", "fit", lambda d: (as_v1(d), edit(d, "params.alpha", 0.9)), False, ValueError, "field 'params' should equal"),
    ("v1-with-hash-field", "fit", lambda d: edit(d, "version", 1), False, ValueError, "field 'sha256' is not one save writes"),
    ("unidentified-round-trip", "unid", {}, False, lambda r: r.status == "unidentified" and r.unidentified == ("alpha", "beta") and r.condition == 1e9, ""),
    ("unidentified-reason-edited", "unid", {"unidentified_reason": ""}, False, ValueError, "does not match its field 'sha256'"),
    ("draws-4-columns", "boot", lambda d: [row.pop() for row in d["draws"]], True, ValueError, "field 'draws' should be [n, 5]"),
    ("draws-row-dropped", "boot", lambda d: d["draws"].pop(), True, ValueError, "field 'objective' should hold 3 values"),
    ("draws-edited", "boot", {"draws.0.3": 0.1}, False, ValueError, "does not match its field 'sha256'"),
    ("boot-status-code", "boot", {"status.0": 9}, True, ValueError, "field 'status' should be a list of status codes"),
    ("boot-status-unidentified", "boot", {"status.0": 4}, True, lambda r: r.n_failed == 1, ""),
    ("boot-file-seed-negative", "boot", {"seed": -1}, True, ValueError, "field 'seed' should be an integer >= 0"),
    ("boot-point-params", "boot", {"point.params.E": 9.0}, True, ValueError, "field 'point.params' should equal"),
    ("boot-point-theta-missing", "boot", {"point.theta": DROP}, True, ValueError, "field 'point.theta' is missing"),
    ("boot-as-fit", "boot", {"kind": "fit"}, True, ValueError, "field 'draws' is not one save writes"),
    ("table-ragged", "table", {"columns.0.values": ["a"]}, True, ValueError, "should hold values of one length; got lengths [1, 2]"),
    ("table-int-as-string", "table", {"columns.2.values": ["10", "12"]}, True, ValueError, "field 'columns[2].values' should be integers"),
    ("table-dtype-unknown", "table", {"columns.1.dtype": "floaty"}, True, ValueError, "field 'columns[1].dtype' should be a pandas dtype name"),
    ("table-column-key", "table", {"columns.1.unit": "x"}, True, ValueError, "field 'columns[1].unit' is not one save writes"),
    ("table-value-edited", "table", {"columns.1.values.0": 0.5}, False, ValueError, "does not match its field 'sha256'"),
    ("table-repeated-name", "table", {"columns.1.name": "group"}, True, ValueError, "field 'columns' has repeated names ['group']"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "source", "edits", "rehash", "expected", "fragment"), SAVES, ids=[c[0] for c in SAVES]
)
def test_saved_file_catalogue(tmp_path, ctx, case, source, edits, rehash, expected, fragment):
    path = js.save(
        {"fit": ctx.fit, "boot": ctx.boot, "table": ctx.table, "unid": ctx.unid}[source], tmp_path / f"{case}.json"
    )
    doc = json.loads(path.read_text())
    if callable(edits):
        edits(doc)
    else:
        for dotted, value in edits.items():
            edit(doc, dotted, value)
    if rehash and "sha256" in doc:
        doc["sha256"] = content_hash(doc)
    path.write_text(json.dumps(doc, indent=1))
    if isinstance(expected, type):
        with pytest.raises(expected) as err:
            js.load(path)
        assert fragment in str(err.value) and str(path) in str(err.value), str(err.value)
    else:
        assert expected(js.load(path))


def test_unedited_saves_load_and_carry_a_hash(tmp_path, ctx):
    for name, result in (("fit", ctx.fit), ("boot", ctx.boot), ("table", ctx.table)):
        path = js.save(result, tmp_path / f"{name}.json")
        doc = json.loads(path.read_text())
        assert doc["version"] == 2 and doc["sha256"] == content_hash(doc)
        loaded = js.load(path)
        if name == "table":
            pd.testing.assert_frame_equal(loaded, result, check_exact=True)
        else:
            np.testing.assert_array_equal(
                loaded.draws if name == "boot" else loaded.theta, result.draws if name == "boot" else result.theta
            )
    # Whitespace is not content: the hash is over the parsed document.
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(json.loads(path.read_text())))
    assert js.load(path).params == ctx.fit.params


TEXTS = [
    ("nan-literal", lambda t: t.replace('"nan"', "NaN", 1), "NaN is not JSON"),
    ("not-an-object", lambda t: "[1, 2]", "was not written by jaxscale.save"),
    ("truncated", lambda t: t[: len(t) // 2], "is not a JSON file written by jaxscale.save"),
]


@pytest.mark.parametrize(("case", "text", "fragment"), TEXTS, ids=[c[0] for c in TEXTS])
def test_saved_text_catalogue(tmp_path, ctx, case, text, fragment):
    path = js.save(ctx.fit._replace(grad_norm=float("nan")), tmp_path / "fit.json")
    path.write_text(text(path.read_text()))
    with pytest.raises(ValueError) as err:
        js.load(path)
    assert fragment in str(err.value) and str(path) in str(err.value), str(err.value)


# ---- Arguments ---------------------------------------------------------------------------


def groups_df():
    df = pd.DataFrame(js.datasets.chinchilla_table()).query("in_epoch_fit_set == 1")
    return df.assign(half=np.where(df["params_N"] < 1e9, "small", "large"))


def fit(**kw):
    return lambda c: js.fit(RUNS, **{**FAST, **kw})


def boot(**kw):
    return lambda c: js.bootstrap(RUNS, **{"n_resamples": 4, "progress": False, **kw})


def groups(**kw):
    return lambda c: js.fit_groups(groups_df(), by="half", N="params_N", D="tokens_D", **kw)


BUDGETS = "compute must be one or more finite FLOP budgets > 0"
ONE = "a bootstrap of 1 resample has no interval"
ARGUMENTS = [
    ("fit-n_refine-0", fit(n_refine=0), ValueError, "n_refine must be an integer >= 1; got 0"),
    ("fit-n_refine-negative", fit(n_refine=-1), ValueError, "n_refine must be an integer >= 1; got -1"),
    ("fit-n_refine-float", fit(n_refine=4.0), TypeError, "n_refine must be an integer >= 1; got 4.0 (float)"),
    ("fit-n_refine-bool", fit(n_refine=True), TypeError, "n_refine must be an integer >= 1; got True (bool)"),
    ("fit-lanes-0", fit(lanes=0), ValueError, "lanes must be an integer >= 1; got 0"),
    ("fit-max_steps-0", fit(max_steps=0), ValueError, "max_steps must be an integer >= 1"),
    ("fit-gtol-0", fit(gtol=0.0), ValueError, "gtol must be a finite number > 0; got 0.0"),
    ("fit-gtol-nan", fit(gtol=float("nan")), ValueError, "gtol must be a finite number > 0; got nan"),
    ("fit-delta-negative", fit(delta=-1e-3), ValueError, "delta must be a finite number > 0"),
    ("fit-delta-string", fit(delta="1e-3"), TypeError, "delta must be a finite number > 0; got '1e-3' (str)"),
    ("fit-fixed-string", fit(fixed={"alpha": "x"}), TypeError, "fixed['alpha'] must be a finite real number; got 'x' (str)"),
    ("fit-fixed-nan", fit(fixed={"alpha": float("nan")}), ValueError, "fixed['alpha'] must be a finite real number; got nan"),
    ("fit-fixed-inf", fit(fixed={"beta": float("inf")}), ValueError, "fixed['beta'] must be a finite real number; got inf"),
    ("fit-fixed-log-nonpositive", fit(fixed={"E": 0.0}), ValueError, "fixed['E'] must be a finite real number > 0 (E is fitted as its log)"),
    ("fit-fixed-unknown", fit(fixed={"gamma": 1.0}), ValueError, "has no parameter 'gamma'"),
    ("fit-fixed-not-dict", fit(fixed=[("E", 1.0)]), TypeError, "fixed must be a dict of parameter values"),
    ("fit-fixed-bool", fit(fixed={"alpha": True}), TypeError, "fixed['alpha'] must be a finite real number; got True (bool)"),
    ("boot-n-1", boot(n_resamples=1), ValueError, f"n_resamples must be an integer >= 2 (resamples; {ONE}); got 1"),
    ("boot-n-float", boot(n_resamples=2.5), TypeError, "n_resamples must be an integer >= 2 (resamples; a bootstrap of 1 resample has no interval); got 2.5 (float)"),
    ("boot-n-string", boot(n_resamples="10"), TypeError, "got '10' (str)"),
    ("boot-n-bool", boot(n_resamples=True), TypeError, "got True (bool)"),
    ("boot-seed-float", boot(seed=1.5), TypeError, "seed must be an integer >= 0; got 1.5 (float)"),
    ("boot-seed-negative", boot(seed=-1), ValueError, "seed must be an integer >= 0; got -1"),
    ("boot-offset-negative", boot(offset=-4), ValueError, "offset must be an integer >= 0"),
    ("boot-n_refine-negative", boot(n_refine=-1), ValueError, "n_refine must be an integer >= 1; got -1"),
    ("boot-chunk_size-0", boot(chunk_size=0), ValueError, "chunk_size must be an integer >= 1; got 0"),
    ("boot-lanes-0", boot(lanes=0), ValueError, "lanes must be an integer >= 1; got 0"),
    ("boot-devices-0", boot(devices=0), ValueError, "devices must be an integer >= 1; got 0"),
    ("boot-progress-string", boot(progress="yes"), TypeError, "progress must be True, False or None; got 'yes' (str)"),
    ("boot-fixed-nan", boot(fixed={"alpha": float("nan")}), ValueError, "fixed['alpha'] must be a finite real number"),
    ("groups-resamples-negative", groups(n_resamples=-1), ValueError, f"n_resamples must be 0 (no bootstrap) or an integer >= 2 (resamples; {ONE}); got -1"),
    ("groups-resamples-1", groups(n_resamples=1), ValueError, f"{ONE}); got 1"),
    ("groups-resamples-float", groups(n_resamples=8.0), TypeError, "got 8.0 (float)"),
    ("groups-level-1", groups(n_resamples=8, level=1.0), ValueError, "level must be a number between 0 and 1 (exclusive), e.g. 0.95; got 1.0"),
    ("groups-retry-int", groups(retry=1), TypeError, "retry must be True or False; got 1 (int)"),
    ("groups-seed-negative", groups(seed=-2), ValueError, "seed must be an integer >= 0; got -2"),
    ("groups-n_refine-0", groups(n_refine=0), ValueError, "n_refine must be an integer >= 1; got 0"),
    ("groups-chunk_size-0", groups(chunk_size=0), ValueError, "chunk_size must be an integer >= 1"),
    ("groups-progress-not-callable", groups(progress=True), TypeError, "progress must be a function or None; got True (bool)"),
    ("groups-fixed-string", groups(fixed={"E": "1.7"}), TypeError, "fixed['E'] must be a finite real number > 0"),
    ("ci-level-above-1", lambda c: c.boot.ci(1.5), ValueError, "level must be a number between 0 and 1 (exclusive)"),
    ("ci-level-string", lambda c: c.boot.ci("0.9"), TypeError, "level must be a number between 0 and 1"),
    ("ci-compute-negative", lambda c: c.boot.ci(compute=[-1]), ValueError, "compute must be a list of finite FLOP budgets > 0; got -1.0 at position 0"),
    ("ci-compute-zero", lambda c: c.boot.ci(compute=[1e21, 0]), ValueError, "got 0.0 at position 1"),
    ("ci-compute-string", lambda c: c.boot.ci(compute=["1e21"]), TypeError, "got '1e21' (str)"),
    ("ci-at-missing-input", lambda c: c.boot.ci(at={"N": [7e10]}), ValueError, "at must give values of law 'chinchilla''s inputs ['N', 'D']; missing ['D']"),
    ("ci-at-negative", lambda c: c.boot.ci(at={"N": [7e10], "D": [-1.0]}), ValueError, "at['D'] must be finite numbers > 0"),
    ("frontier-compute-negative", lambda c: js.frontier(c.fit, compute=[-1]), ValueError, f"{BUDGETS}; got -1.0 at position 0"),
    ("frontier-compute-empty", lambda c: js.frontier(c.fit, compute=[]), ValueError, f"{BUDGETS}; got none"),
    ("frontier-compute-nan", lambda c: js.frontier(c.fit, compute=[1e21, float("nan")]), ValueError, "got nan at position 1"),
    ("frontier-level", lambda c: js.frontier(c.boot, compute=[1e21], level=0), ValueError, "level must be a number between 0 and 1"),
    ("frontier-n_range", lambda c: js.frontier(c.fit, compute=[1e21], method="numeric", n_range=(1e16, 1e4)), ValueError, "n_range must be two finite numbers 0 < low < high"),
    ("frontier-result-type", lambda c: js.frontier("fit.json", compute=[1e21]), TypeError, "result must be a FitResult, a BootstrapResult, an isoflop table or a dict"),
    ("frontier-dict-params", lambda c: js.frontier({"E": 1.7, "A": 400.0}, compute=[1e21], law="chinchilla"), ValueError, "missing ['B', 'alpha', 'beta']"),
    ("frontier-input", lambda c: js.frontier(c.fit, compute=[1e21], method="numeric", U=-1.0), ValueError, "the input U=-1.0 must be a finite number > 0"),
    ("frontier-flops", lambda c: js.frontier(c.fit, compute=[1e21], flops=6), TypeError, "flops must be a function or None; got 6 (int)"),
    ("validate-n_refine", lambda c: js.validate(RUNS, train=RUNS.x[:, 0] < 5e9, n_refine=0), ValueError, "n_refine must be an integer >= 1"),
    ("validate-train-3", lambda c: js.validate(RUNS, train=np.arange(N) < 3), ValueError, "need at least 6 runs"),
    ("validate-train-shape", lambda c: js.validate(RUNS, train=[True, False]), ValueError, "train must be 240 booleans"),
    ("save-path-type", lambda c: js.save(c.fit, 3), TypeError, "path must be a file name (str or pathlib.Path); got int"),
    ("load-path-type", lambda c: js.load(None), TypeError, "path must be a file name"),
    ("load-law-type", lambda c: js.load("fit.json", law=3), TypeError, "law must be a law name or a Law"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "call", "error", "fragment"), ARGUMENTS, ids=[c[0] for c in ARGUMENTS])
def test_argument_catalogue(ctx, no_kernels, case, call, error, fragment):
    with pytest.raises(error) as err:
        call(ctx)
    assert fragment in str(err.value), str(err.value)


def test_numpy_integers_are_counts(ctx):
    res = js.fit(RUNS, n_refine=np.int64(4), lanes=np.int32(512), max_steps=np.int16(1000))
    assert res.params == ctx.fit.params  # the same fit as with Python ints (the same kernel)


# ---- Weights -----------------------------------------------------------------------------


def first(k, value=1.0):
    return np.where(np.arange(N) < k, value, 0.0)


TOO_FEW = "3 runs cannot determine 5 free parameters of law 'chinchilla': need at least 6 runs"
WEIGHTS = [
    ("all-zero", {"weights": np.zeros(N)}, ValueError, "weights are all zero: no run is left to fit"),
    ("three-nonzero", {"weights": first(3)}, ValueError, f"weights leave 3 of the 240 runs (those with non-zero weight): {TOO_FEW}"),
    ("five-nonzero", {"weights": first(5, 2.0)}, ValueError, "5 runs cannot determine 5 free parameters"),
    ("negative", {"weights": -first(N)}, ValueError, "weights must be 240 finite, non-negative numbers (one per run); run 0 has weight -1.0"),
    ("nan", {"weights": np.where(np.arange(N) == 7, np.nan, 1.0)}, ValueError, "run 7 has weight nan"),
    ("wrong-length", {"weights": np.ones(3)}, ValueError, "weights must be 240 finite, non-negative numbers (one per run); got shape (3,)"),
    ("not-numbers", {"weights": ["a"] * N}, TypeError, "weights must be 240 finite, non-negative numbers"),
    ("three-with-fixed-still-few", {"weights": first(2), "fixed": {"E": 1.8, "alpha": 0.34, "beta": 0.37}}, ValueError, "2 runs cannot determine 2 free parameters"),
    ("six-nonzero-fits", {"weights": first(6)}, None, lambda r: r.n_points == 6 and np.isfinite(r.objective)),
    ("three-with-fixed-fits", {"weights": first(3), "fixed": {"E": 1.8, "alpha": 0.34, "beta": 0.37}}, None, lambda r: r.n_points == 3),
]  # fmt: skip


@pytest.mark.parametrize(("case", "options", "error", "expect"), WEIGHTS, ids=[c[0] for c in WEIGHTS])
def test_weights_catalogue(case, options, error, expect, monkeypatch):
    if error is None:
        assert expect(js.fit(RUNS, **FAST, **options))
        return
    monkeypatch.setattr(batches, "solve", lambda *a, **k: pytest.fail("a kernel ran before the weights were checked"))
    with pytest.raises(error) as err:
        js.fit(RUNS, **FAST, **options)
    assert expect in str(err.value), str(err.value)


def test_catalogue_ids_are_unique():
    ids = [c[0] for c in SAVES + TEXTS + ARGUMENTS + WEIGHTS]
    assert len(set(ids)) == len(ids)
