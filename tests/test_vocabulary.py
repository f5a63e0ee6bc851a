"""One vocabulary across Python and the command line.

* ``n_resamples`` (``--resamples``) is the resample count everywhere;
* ``loss`` names the loss *column*, ``loss_fn`` the loss *function*;
* "center", not "centre"; ``vanished``: the parameters whose term vanished;
* each function returns one type (``envelope`` a table, with or without ``by``).

The old spellings still work for now, with a FutureWarning (Python) or a warning line (CLI).
"""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import jaxscale as js
from jaxscale import checks
from jaxscale import functional as jsf

PACKAGE = Path(js.__file__).parent
RUNS = js.datasets.chinchilla()


@pytest.mark.parametrize(
    "function, count, loss_fn",
    [
        (js.fit, None, True),
        (js.bootstrap, "n_resamples", True),
        (js.fit_groups, "n_resamples", True),
        (js.isoflop, "n_resamples", False),
        (js.envelope, "n_resamples", False),
        (jsf.fit, None, True),
        (jsf.fit_batch, None, True),
    ],
)
def test_public_signatures_use_the_one_name(function, count, loss_fn):
    names = set(inspect.signature(function).parameters)
    assert not names & {"n", "n_boot", "bootstrap"}, names
    assert count is None or count in names
    assert ("loss_fn" in names) == loss_fn
    if "loss" in names:  # only ever a column name
        assert inspect.signature(function).parameters["loss"].default == "loss"


def test_the_package_source_says_center_and_vanished():
    def lines(path):  # the old names stay only where they are accepted, with a warning
        return "\n".join(line for line in path.read_text().splitlines() if "checks.renamed(" not in line)

    text = {p.name: lines(p) for p in PACKAGE.rglob("*.py")}
    for word in (r"\bcentr(e|ed|es)\b", r"\bat_bound\b", r"\bn_boot\b"):
        found = [name for name, body in text.items() if re.search(word, body)]
        assert found == [], (word, found)


def test_old_keywords_still_work_with_a_future_warning():
    with pytest.warns(FutureWarning, match=r"bootstrap\(n=\.\.\.\) is now bootstrap\(n_resamples=\.\.\.\)"):
        old = js.bootstrap(RUNS, n=4, seed=3, progress=False)
    new = js.bootstrap(RUNS, n_resamples=4, seed=3, progress=False)
    np.testing.assert_array_equal(old.draws, new.draws)
    assert new.n_resamples == 4
    with pytest.warns(FutureWarning, match=r"fit\(loss=\.\.\.\) is now fit\(loss_fn=\.\.\.\)"):
        old_fit = js.fit(RUNS, loss="squared", n_refine=4)
    assert old_fit.loss_fn == "squared"
    assert old_fit.params == js.fit(RUNS, loss_fn="squared", n_refine=4).params


def test_old_and_new_keyword_together_is_an_error():
    @checks.renamed(n="n_resamples")
    def resample(*, n_resamples: int = 1) -> int:
        return n_resamples

    with pytest.warns(FutureWarning):
        assert resample(n=7) == 7
    with pytest.raises(TypeError, match=r"resample\(\) got both n= and n_resamples=; pass n_resamples= only"):
        resample(n=7, n_resamples=8)


def test_the_old_flag_still_works_and_says_the_new_one(capsys):
    from jaxscale import cli

    args = cli._parser().parse_args(["fit", "runs.csv", "--bootstrap", "12"])
    assert args.resamples == 12
    assert "jaxscale: warning: --bootstrap is now --resamples" in capsys.readouterr().err
    assert "--bootstrap" not in cli._parser().format_help()
    assert cli._parser().parse_args(["isoflop", "runs.csv"]).resamples == 1000


def test_vanished_names_the_terms_in_result_json_and_table():
    res = js.fit(RUNS)
    assert res.vanished == () and res.to_dict()["diagnostics"]["vanished"] == []
    assert res.to_dict()["diagnostics"]["loss_fn"] == "huber"
