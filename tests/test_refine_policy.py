"""The staged refinement policy (refinement.in_doubt, engine._staged): which problems get all their starts."""

import numpy as np

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


def test_in_doubt_flags_failed_disagreeing_and_vanished_problems_on_the_host_and_in_the_kernel():
    spec = specs.make_spec(LAW, n_refine=8, staged=True)
    assert (refinement.first_pass(spec), spec.n_refine) == (specs.N_REFINE_FIRST, 8) == (3, 8)
    theta = np.zeros((5, LAW.n_params))
    theta[3, 0] = -40.0  # a log coefficient below VANISHED_LOG: its term vanished
    first = solved([1.0, 2.0, 3.0, 4.0, 5.0], [0, 1, 0, 0, 0], [3, 3, 1, 3, 3], theta)
    # not converged, disagreeing, vanished; rows 0 and 4 agreed
    np.testing.assert_array_equal(refinement.in_doubt(spec, first), [False, True, True, True, False])
    # The same problems as the kernel sees them: each refined start's objective.
    starts = [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.5, 4.0], [4.0, 4.0, 4.0], [5.0, 5.0, 5.0 * (1 + 1e-10)]]
    traced = [
        bool(refinement.in_doubt_traced(spec.cfg, theta[i], np.array(v), first.status[i], np.ones(LAW.n_params)))
        for i, v in enumerate(starts)
    ]
    assert traced == [False, True, True, True, False]
    inert = np.ones(LAW.n_params)
    inert[3] = 0.0  # alpha moves no prediction: its term dropped out
    assert refinement.in_doubt_traced(spec.cfg, theta[0], np.ones(3), 0, inert)
    assert refinement.in_doubt_traced(spec.cfg, theta[0], np.array([1.0, np.nan, 1.0]), 0, np.ones(LAW.n_params))


def test_unstaged_and_grid_specs_have_no_first_pass():
    assert refinement.first_pass(specs.make_spec(LAW, n_refine=8)) == 8
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


def test_staged_in_the_kernel_refines_the_rest_exactly_where_the_first_pass_is_in_doubt():
    """engine._staged: every problem's first 3 starts as unstaged; all 8 (bit for bit as
    unstaged) for exactly the problems refinement.in_doubt flags after a 3-start solve; the
    others' 5 skipped."""
    from benchmarks.groups_data import make_archive
    from jaxscale import batches
    from jaxscale.fit import match_inputs

    df, _ = make_archive(48, min_points=12, max_points=40, noise=0.05, seed=5)
    runs = js.read_runs(df, group=["group"])
    members = [np.flatnonzero(df["group"].to_numpy() == g) for g in range(48)]
    spec = specs.make_spec(LAW, n_refine=8)
    data, w = batches.pad_groups(spec.cfg, spec.theta_fixed, match_inputs(runs, LAW), runs.log_loss(), members, 64)
    options = dict(chunk_size=2048, lanes=256, devices=1, grouped=True)

    def solve(k, first=None):
        return batches.solve(spec.cfg, data, spec.candidates, w, n_refine=k, first_refine=first, **options)

    staged, unstaged, three = solve(8, 3), solve(8), solve(3)
    doubt = refinement.in_doubt(spec, refinement.solved_from(three))
    assert 0 < doubt.sum() < 48  # both kinds occur
    np.testing.assert_array_equal(staged.n_refined, np.where(doubt, 8, 3))
    np.testing.assert_array_equal(staged.start_values[:, :3], unstaged.start_values[:, :3])
    np.testing.assert_array_equal(staged.start_values[doubt], unstaged.start_values[doubt])
    assert np.all(np.isinf(staged.start_values[~doubt, 3:]))
    np.testing.assert_array_equal(staged.theta[doubt], unstaged.theta[doubt])
    np.testing.assert_array_equal(staged.theta[~doubt], three.theta[~doubt])
    assert np.all(staged.value >= unstaged.value)  # skipping starts never finds a lower optimum
    again = refinement.solved_from(staged)
    np.testing.assert_array_equal(again.n_starts, np.where(doubt, 8, 3))


def test_a_spread_first_pass_takes_the_best_start_then_the_farthest_ones():
    from jaxscale.screening import spread_first

    # Five starts in 2-D, screened ranks 0..4 in this order.
    starts = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 3.0], [0.2, 0.1]])
    idx = np.array([[0, 1, 2, 3, 4]])
    picked, scale = starts[idx], starts.std(axis=0)  # screened starts in rank order; the grid's spread
    out = np.asarray(spread_first(picked, scale, 3))
    # best (0), the farthest from it (2), the farthest from both (3); then the rest in rank order
    np.testing.assert_array_equal(out, [[0, 2, 3, 1, 4]])
    grouped = np.asarray(spread_first(picked, scale[None, None], 2))  # a spread per problem: [B, 1, p]
    np.testing.assert_array_equal(grouped, [[0, 2, 1, 3, 4]])
