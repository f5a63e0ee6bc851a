"""The notebooks under notebooks/ run top to bottom, in this interpreter, and print what they promise.

Each notebook is executed with nbclient in a fresh kernel whose working directory is the repo
root; the test then looks up tagged cells and checks that their text output contains the key
figures (fitted values are compared at the digits the notebooks print, which are set by the
fits, not by platform round-off). The notebooks are stored without outputs; a fast test checks it.
"""

import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Per notebook: (tag of a cell, text its output must contain).
EXPECTED = {
    "01_chinchilla_approach3": [
        # Epoch AI's grid fit: A = 477.8, B = 2143.9, E = 1.8172, alpha = 0.3473, beta = 0.3672.
        ("fit", "objective 0.001018274"),
        ("fit", "0.34731"),  # alpha
        ("fit", "0.367172"),  # beta
        ("compare", "Epoch grid fit"),
        ("bootstrap", "0 of 200 resamples failed"),
        ("intervals", "a = beta / (alpha + beta) = 0.514"),
        ("frontier", "At Chinchilla's budget: 17.9 tokens per parameter"),
    ],
    "02_isoflop_porian": [
        ("table", "Optimizer tuning (no decay)"),
        # Porian et al.'s tuned configuration recovers Hoffmann et al.'s a ~ 0.5.
        ("summary", "rw / Optimizer tuning (no decay): a = 0.514"),
        ("summary", "owt2 / Optimizer tuning (no decay): a = 0.511"),
        ("sensitivity", "C >= 1e17"),
    ],
    "03_run_archive_groups": [
        ("groups", "24 groups, 24 converged"),
        # The over-training law fitted below 1B parameters predicts the RedPajama 1.4B/6.9B runs
        # within 0.31% (the authors report 0.71% and 0.73% from their own fit).
        ("validate", "rpj: fit on 32 runs (converged)"),
        ("validate", "max 0.31%"),
        ("save", "round trip: identical"),
    ],
    "04_your_own_law": [
        ("law", "law 2.820975838053, by hand 2.820975838053"),
        ("fit", "0.341195"),  # alpha; the truth is 0.34
        ("frontier", "N_opt ~ C^a with a = 0.5000"),
        ("fixed", "E held at 1.8"),
    ],
    "05_embedding_in_jax": [
        ("bootstrap", "converged: 200 of 200"),
        ("influence", "alpha = 0.3473"),
        # Epoch's fit gives 17.65 tokens per parameter at 1e24 FLOPs under C = 6ND.
        ("influence", "tokens per parameter at 1e24 FLOPs = 17.6"),
        # Both rank correlations printed were 1.000 and 0.992 (issue 20 asks for >= 0.9).
        ("influence", "most influential runs: "),
        ("optax", "held-out RMS log error fell from 0.0115"),
    ],
    "06_posterior": [
        # Issue 25's must-show, printed: the Gaussian posterior's means inside the bootstrap's
        # 95% intervals, and the chains' status.
        ("compare", "inside the bootstrap's 95% interval: 5 of 5 parameters"),
        ("compare", "(student_t likelihood): 4 chains x 1000 draws, status 'ok'"),
        ("diagnostics", "0 divergent transitions"),
        # 12 runs: the default prior's chains fail their diagnostics (ESS ~108 of 400 needed);
        # with the full fit's bootstrap as the prior they pass.
        ("ladder", "default prior: status not_converged"),
        ("ladder", "prior from the full fit: status ok"),
        # P(tokens/param at 1e24 > 20): 0.031 under the Gaussian, 0.370 under the Student-t.
        ("probability", "Gaussian posterior:               P = 0.0"),
        ("frontier", "tokens per parameter"),
    ],
}


def text_of(cell) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def tagged(nb, tag: str) -> list:
    return [cell for cell in nb.cells if tag in cell.get("metadata", {}).get("tags", [])]


def test_there_are_notebooks_and_each_has_expectations():
    names = {path.stem for path in NOTEBOOKS}
    assert names, "no notebooks found under notebooks/"
    assert names == set(EXPECTED), f"notebooks without expectations (or stale entries): {names ^ set(EXPECTED)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        f"{path.name} holds outputs: clear them before committing (jupyter nbconvert --clear-output --inplace)"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for tag, _ in EXPECTED[path.stem]:
        assert len(tagged(nb, tag)) == 1, f"{path.name}: expected exactly one cell tagged {tag!r}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_prints_its_results(path):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    # Appended in memory only: the kernel must be this interpreter's (the venv with jaxscale).
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)", metadata={"tags": ["interpreter"]}))
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    # Figures come back as image/png outputs only with the inline backend (ipykernel's default,
    # unless MPLBACKEND says otherwise, e.g. Agg on a CI runner).
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError, naming the cell, if any cell fails
    took = time.perf_counter() - start
    print(f"\n{path.name}: executed in {took:.1f} s")

    (check,) = tagged(nb, "interpreter")
    assert text_of(check).strip() == sys.prefix, "the notebook ran in another interpreter than the tests"
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    for tag, expected in EXPECTED[path.stem]:
        (cell,) = tagged(nb, tag)
        assert expected in text_of(cell), f"{path.name}, cell {tag!r}: {expected!r} not in\n{text_of(cell)}"
    figures = [out for cell in nb.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert figures, f"{path.name} drew no figure"
