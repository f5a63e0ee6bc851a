"""compute_multiplier: exact on variants with a known multiplier, bands on Gadre et al.'s runs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxscale as js

BASE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al.
GADRE = Path(__file__).parent / "fixtures" / "gadre2024_overtraining" / "models_losses.csv"


def scaled(params, s, t):
    """The law with N and D scaled by s and t: L(sN, tD), whose frontier is the original's at st·C."""
    return {**params, "A": params["A"] * s ** -params["alpha"], "B": params["B"] * t ** -params["beta"]}


@pytest.mark.parametrize("s, t", [(2.0, 1.5), (0.5, 1.0), (1.0, 7.0)])
def test_exact_on_a_known_multiplier(s, t):
    table = js.compute_multiplier(BASE, scaled(BASE, s, t), np.logspace(19, 25, 7), law="chinchilla")
    np.testing.assert_allclose(table["multiplier"], s * t, rtol=1e-9)
    np.testing.assert_allclose(table["variant_compute"], table["compute"] / (s * t), rtol=1e-9)
    assert (table["status"] == "ok").all()
    # Swapped, the multiplier inverts.
    back = js.compute_multiplier(scaled(BASE, s, t), BASE, np.logspace(19, 25, 7), law="chinchilla")
    np.testing.assert_allclose(back["multiplier"], 1 / (s * t), rtol=1e-9)


def test_unreachable_loss_is_said():
    table = js.compute_multiplier(BASE, {**BASE, "E": 2.5}, [1e21], law="chinchilla")
    assert table["status"][0] == "unreachable" and table["multiplier"][0] == 0


def test_works_for_numeric_frontiers_too():
    law = js.get_law("chinchilla_tied")
    base = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.33}
    other = {**base, "A": 400.0 * 3.0**-0.33}  # s = 3, t = 1
    table = js.compute_multiplier(base, other, [1e20, 1e22], law=law)
    np.testing.assert_allclose(table["multiplier"], 3.0, rtol=1e-4)  # the numeric allocation's tolerance


def test_bands_on_gadre_datasets():
    df = pd.read_csv(GADRE)
    fits = {}
    for name in ("c4_original", "rw_original"):
        part = df[df["train_dataset"] == name]
        runs = js.read_runs(part, N="params_N", D="tokens_D", loss="loss_c4_val")
        fits[name] = js.bootstrap(runs, n_resamples=200, seed=0, progress=False)
    budgets = [1e20, 1e22, 1e24]
    table = js.compute_multiplier(fits["c4_original"], fits["rw_original"], budgets)
    point = js.compute_multiplier(fits["c4_original"].point, fits["rw_original"].point, budgets)
    np.testing.assert_allclose(table["multiplier"], point["multiplier"], rtol=1e-12)
    assert (table["multiplier_lower"] <= table["multiplier"]).all()
    assert (table["multiplier"] < table["multiplier_upper"]).all()
    # At 1e24 some RefinedWeb resamples' irreducible loss sits above the C4 fit's loss there:
    # those pairs count as a multiplier of 0, and the fraction is reported.
    assert table["unreached_fraction"][0] == 0 and 0 < table["unreached_fraction"][2] < 0.3
    # Trained on C4 and scored on C4, the C4 runs need less compute than RefinedWeb's to a loss.
    assert (table["multiplier"] < 1).all()
    print("\nGadre et al., RefinedWeb vs C4 training (C4 eval loss), compute multiplier with 95% bands:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def test_argument_errors():
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        js.compute_multiplier(BASE, BASE, [1e21], law="chinchilla", level=2)
    with pytest.raises(ValueError, match="needs law="):
        js.compute_multiplier(BASE, BASE, [1e21])


def test_cli_multiplier(tmp_path):
    from tests.test_cli import run

    df = pd.read_csv(GADRE)
    paths = {}
    for name in ("c4_original", "rw_original"):
        paths[name] = tmp_path / f"{name}.csv"
        df[df["train_dataset"] == name].to_csv(paths[name], index=False)
    cols = ["--N", "params_N", "--D", "tokens_D", "--loss", "loss_c4_val"]
    out = run("multiplier", str(paths["c4_original"]), str(paths["rw_original"]), *cols, "--compute", "1e20", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    fits = [js.fit(js.read_runs(paths[n], N="params_N", D="tokens_D", loss="loss_c4_val")) for n in paths]
    api = js.compute_multiplier(*fits, [1e20])
    assert doc["multiplier"][0]["multiplier"] == pytest.approx(api["multiplier"][0], rel=1e-9)
    assert doc["baseline"]["converged"] and doc["variant"]["converged"]
