"""The staged refinement policy against refining every problem's best 8 and best 64 starts.

Staged: each problem refines its best 2 (or 3, 4) screened starts, and its best 8 only where
that pass leaves doubt (jaxscale.refinement.in_doubt: not converged, a term vanished, or they
disagree), within the same kernel call.
Counts, per problem family, the problems whose objective is above the 64-start optimum (by
more than 1e-9 relative) under each policy, how many were escalated, and the time of each
(warm: every policy's kernels compiled first by the same call; before 2026-12-05 they were
compiled on a smaller batch, whose chunk shapes differ, so the timed calls compiled too).

Families: the 4,000 seed-0 Epoch resamples (js.bootstrap's draws), and synthetic archives of
benchmarks/groups_data.py (2,000 groups each, noise 1%, 3%, 0.3%, 5%, as RESULTS.md's
"Refined starts" measured agreement of 2).

And the policy as shipped (js.bootstrap's default: staged with the point estimate, gated by
refinement.may_stage) against staged=False and the best 64, on 15 small synthetic groups of 20-60
runs, 24 resamples each (small_groups).

Usage: python benchmarks/refine_policy.py [n_resamples] [n_groups]   (about 25 min on 2 cores)
       python benchmarks/refine_policy.py small                       (about 5 min)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jaxscale as js  # noqa: E402
from benchmarks.groups_data import make_archive  # noqa: E402
from jaxscale import group_runner, refinement, runner, specs  # noqa: E402
from jaxscale.fit import match_inputs  # noqa: E402

RTOL = 1e-9
# name: (make_spec options, starts refined first, point estimate among the candidates)
POLICIES = {
    "8": (dict(n_refine=8), 8, False),
    "staged 2 -> 8": (dict(n_refine=8, staged=True), 2, False),
    "staged 3 -> 8": (dict(n_refine=8, staged=True), 3, False),
    "staged 4 -> 8": (dict(n_refine=8, staged=True), 4, False),
    "point + 2 -> 8": (dict(n_refine=8, staged=True), 2, True),
    "64": (dict(n_refine=64), 64, False),
}


def worse(value: np.ndarray, best: np.ndarray) -> int:
    return int(np.sum(value > best * (1 + RTOL) + 1e-300))


def report(name: str, results: dict[str, tuple[np.ndarray, float, int]]) -> None:
    best = results["64"][0]
    print(f"\n{name}: {len(best)} problems")
    for policy, (value, took, escalated) in results.items():
        extra = f", escalated {escalated}" if escalated >= 0 else ""
        print(f"  {policy:>14}: {took:7.2f} s, above the 64-start optimum: {worse(value, best)}{extra}")


def resamples(n: int) -> None:
    runs = js.datasets.chinchilla()
    law = js.get_law("chinchilla")
    key = jax.random.key(0)

    def weights(lo, hi):
        return runner.resample_weights(key, lo, hi, runs.n_points)

    point = js.fit(runs, law).theta
    results = {}
    for policy, (options, first, with_point) in POLICIES.items():
        spec = specs.make_spec(law, **options)._replace(first_refine=first)
        if with_point:
            spec = spec._replace(candidates=np.vstack([point[None], spec.candidates]))
        data = specs.make_data(spec, match_inputs(runs, law), runs.log_loss())
        runner.solve_resamples(spec, data, weights, n)  # compile every shape the timed call runs
        start = time.perf_counter()
        solved = runner.solve_resamples(spec, data, weights, n)
        took = time.perf_counter() - start
        results[policy] = (np.asarray(solved.value), took, _escalated(spec, solved.n_starts))
    report(f"Epoch resamples (seed 0, {n})", results)


def _escalated(spec, n_starts: np.ndarray) -> int:
    """How many problems the staged policy gave all their starts (-1: not staged)."""
    if refinement.first_pass(spec) >= spec.n_refine:
        return -1
    return int(np.sum(n_starts >= spec.n_refine))


def small_groups() -> None:
    from tests.test_groups import synthetic_groups

    archive_df, _ = make_archive(12, min_points=20, max_points=60, noise=0.02, seed=5)
    three = synthetic_groups([30, 45, 30], noise=0.01)
    sets = [js.read_runs(three[three["group"] == g]) for g in range(3)]
    sets += [
        js.read_runs(archive_df[archive_df["group"] == g], N="N", D="D") for g in sorted(archive_df["group"].unique())
    ]
    above = {"staged=False": 0, "default": 0}
    for i, runs in enumerate(sets):
        options = dict(n_resamples=24, seed=7 + i, progress=False)
        best = js.bootstrap(runs, staged=False, n_refine=64, **options).objective
        for name, extra in (("staged=False", {"staged": False}), ("default", {})):
            value = js.bootstrap(runs, **extra, **options).objective
            above[name] += worse(value, best)
        point = js.fit(runs)
        agree = f"point fit {point.n_at_optimum} of 64 starts at its optimum"
        print(f"  group {i:2d} ({runs.n_points} runs, {agree}): {above}")
        jax.clear_caches()


def archive(n_groups: int, noise: float, seed: int) -> None:
    df, _ = make_archive(n_groups, noise=noise, seed=seed)
    runs = js.read_runs(df, N="N", D="D", loss="loss", group=["group"])
    law = js.get_law("chinchilla")
    gid = np.unique(runs.groups, return_inverse=True)[1].ravel()
    members = [np.flatnonzero(gid == g) for g in range(gid.max() + 1)]
    ids = list(range(len(members)))
    log_x, log_y = match_inputs(runs, law), runs.log_loss()
    results = {}
    for policy, (options, first, with_point) in POLICIES.items():
        if with_point:
            continue  # groups have no point estimate to start from
        spec = specs.make_spec(law, retry_failed=True, **options)._replace(first_refine=first)
        group_runner.solve_groups(spec, log_x, log_y, members, ids)  # compile every shape the timed call runs
        start = time.perf_counter()
        buckets = group_runner.solve_groups(spec, log_x, log_y, members, ids)
        took = time.perf_counter() - start
        value, n_starts = np.empty(len(ids)), np.empty(len(ids))
        for b in buckets:
            value[b.ids], n_starts[b.ids] = b.solved.value, b.solved.n_starts
        results[policy] = (value, took, _escalated(spec, n_starts))
    report(f"archive of {n_groups} groups, noise {noise:.1%}, seed {seed}", results)
    jax.clear_caches()  # each archive compiles its own buckets: memory would run out


if __name__ == "__main__":
    if sys.argv[1:] == ["small"]:
        print("15 small groups, resamples above the best 64 starts' optimum (cumulative):")
        small_groups()
        sys.exit()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    g = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    print(f"jax {jax.__version__}, {jax.devices()}")
    resamples(n)
    for noise, seed in ((0.01, 0), (0.03, 1), (0.003, 2), (0.05, 3)):
        archive(g, noise, seed)
