"""The staged refinement policy (refinement.escalate): which problems get all their starts, and at what cost."""

import numpy as np
import pytest

import jaxscale as js
from jaxscale import refinement, specs

LAW = js.get_law("chinchilla")


def solved(values, status, n_at_optimum, theta=None):
    b = len(values)
    theta = np.zeros((b, LAW.n_params)) if theta is None else np.asarray(theta, dtype=float)
    return refinement.Solved(
        theta=theta,
        value=np.asarray(values, dtype=float),
        status=np.asarray(status),
        steps=np.full(b, 10),
        grad_norm=np.zeros(b),
        sensitivity=np.ones((b, LAW.n_params)),
        n_starts=np.full(b, 3),
        n_at_optimum=np.asarray(n_at_optimum),
    )


def test_escalate_solves_again_exactly_the_problems_in_doubt():
    spec = specs.make_spec(LAW, n_refine=8, staged=True)
    assert (refinement.first_pass(spec), spec.n_refine) == (specs.N_REFINE_FIRST, 8) == (3, 8)
    theta = np.zeros((5, LAW.n_params))
    theta[3, 0] = -40.0  # a log coefficient below VANISHED_LOG: its term vanished
    first = solved([1.0, 2.0, 3.0, 4.0, 5.0], [0, 1, 0, 0, 0], [3, 3, 1, 3, 3], theta)
    asked = []

    def solve_rows(rows, k):
        asked.append((rows.tolist(), k))
        return solved([0.5, 3.5, 3.0], [0, 0, 0], [8, 8, 8])  # row 2 ends worse: its first result stays

    out = refinement.escalate(spec, first, solve_rows)
    assert asked == [([1, 2, 3], 8)]  # not converged, disagreeing, vanished; rows 0 and 4 agreed
    np.testing.assert_array_equal(out.value, [1.0, 0.5, 3.0, 3.0, 5.0])
    assert out.n_at_optimum.tolist() == [3, 8, 1, 8, 3]


def test_unstaged_spec_never_escalates():
    spec = specs.make_spec(LAW, n_refine=8)
    first = solved([1.0], [1], [1])
    assert refinement.first_pass(spec) == 8
    assert refinement.escalate(spec, first, lambda rows, k: pytest.fail("no second pass")) is first
    grid = specs.make_spec(LAW, starts="grid", staged=True)  # every start refined: nothing to stage
    assert refinement.first_pass(grid) == grid.n_refine == len(grid.candidates)


def test_staged_bootstrap_reaches_the_unstaged_optima_on_the_epoch_points():
    """The default (point estimate + best two grid starts, 8 where they disagree) against every
    resample's best 8 screened starts: the same optima to 1e-9 (4,000 resamples: see
    benchmarks/RESULTS.md, "Refinement policy")."""
    runs = js.datasets.chinchilla()
    staged = js.bootstrap(runs, n_resamples=48, seed=3, progress=False)
    full = js.bootstrap(runs, n_resamples=48, seed=3, progress=False, staged=False)
    assert staged.n_failed == full.n_failed == 0
    np.testing.assert_allclose(staged.objective, full.objective, rtol=1e-9)
    np.testing.assert_allclose(staged.draws, full.draws, rtol=1e-4)
