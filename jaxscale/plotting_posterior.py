"""Figures of a :class:`~jaxscale.PosteriorResult`: chains' traces and pairs of parameters.

Frontier bands of a posterior are :func:`jaxscale.plotting.plot_frontier` of
``js.frontier(post, compute=...)``. As in :mod:`jaxscale.plotting`, nothing is shown: each function
draws into the axes given (or a new figure), returns them, and its artists carry a ``gid``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._plot_style import axes_for, grid_style, tex

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .posterior_result import PosteriorResult


def _chains(post: PosteriorResult, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each name's draws as ``[chains, draws]`` (natural parameters and ``sigma``)."""
    samples = post.samples
    missing = [n for n in names if n not in samples]
    if missing:
        raise ValueError(f"no draws of {missing}; the posterior has {list(samples)}")
    chains, draws = post.sigma.shape
    return {n: np.asarray(samples[n], dtype=np.float64).reshape(chains, draws) for n in names}


def plot_trace(
    post: PosteriorResult, params: str | Sequence[str] = ("E", "alpha", "beta"), *, axes: Axes | None = None
) -> tuple[Axes, ...]:
    """Each chain's draws of each of ``params`` against the draw number, one row per parameter,
    titled with its R-hat and bulk ESS: chains that wander apart or stick show here.

    Returns one Axes per parameter; gids: ``"chain<k>"`` (chain k's line).

    Example:
        >>> import jaxscale as js
        >>> from jaxscale.plotting_posterior import plot_trace
        >>> post = js.posterior(js.datasets.chinchilla(), chains=2, draws=60, warmup=60, seed=0)
        >>> [ax.lines[0].get_gid() for ax in plot_trace(post, ("alpha", "sigma"))]
        ['chain0', 'chain0']
        >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    params = (params,) if isinstance(params, str) else tuple(params)
    values = _chains(post, params)
    axs = axes_for(axes, len(params), nrows=len(params), ncols=1, figsize=(7.0, 1.8 * len(params) + 0.6))
    per = post.diagnostics["per_parameter"]
    for ax, name in zip(axs, params, strict=True):
        for k, chain in enumerate(values[name]):
            ax.plot(chain, color=f"C{k}", lw=0.5, alpha=0.8, gid=f"chain{k}")
        d = per.get(name, {})
        ax.set_ylabel(tex(name))
        ax.set_title(f"R-hat {d.get('rhat', np.nan):.4f}, bulk ESS {d.get('ess_bulk', np.nan):.0f}", fontsize="small")
        grid_style(ax)
    axs[-1].set_xlabel("draw (after warm-up)")
    axs[0].figure.suptitle(f"{post.law.name} posterior: status {post.status}", fontsize="medium")
    return tuple(axs)


def plot_pairs(
    post: PosteriorResult,
    params: Sequence[str] = ("E", "alpha", "beta"),
    *,
    max_points: int = 2000,
    seed: int = 0,
    axes: Sequence[Axes] | None = None,
) -> np.ndarray:
    """A pairs plot: histograms of each of ``params`` on the diagonal, every pair's draws below it
    (at most ``max_points``, chosen at random with ``seed``), the multi-start fit marked.

    Returns the ``[k, k]`` grid of Axes (above the diagonal hidden); gids: ``"draws"`` (scatter
    or histogram), ``"fit"`` (the point fit).

    Example:
        >>> import jaxscale as js
        >>> from jaxscale.plotting_posterior import plot_pairs
        >>> post = js.posterior(js.datasets.chinchilla(), chains=2, draws=60, warmup=60, seed=0)
        >>> grid = plot_pairs(post, ("alpha", "beta"))
        >>> grid.shape, grid[1, 0].get_xlabel(), grid[1, 0].get_ylabel()
        ((2, 2), '$\\\\alpha$', '$\\\\beta$')
        >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    params = tuple(params)
    k = len(params)
    values = {n: v.reshape(-1) for n, v in _chains(post, params).items()}
    n = next(iter(values.values())).size
    pick = np.random.default_rng(seed).permutation(n)[: min(n, max_points)]
    fit = {**post.point.params, "sigma": np.nan}
    grid = np.array(axes_for(axes, k * k, nrows=k, ncols=k, figsize=(2.4 * k + 0.4, 2.4 * k))).reshape(k, k)
    for i, row in enumerate(params):
        for j, col in enumerate(params):
            ax = grid[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(values[row], bins=40, color="C0", alpha=0.7, gid="draws")
                ax.axvline(fit[row], color="black", lw=1.2, gid="fit")
            else:
                ax.scatter(values[col][pick], values[row][pick], s=3, alpha=0.3, color="C0", lw=0, gid="draws")
                ax.plot(fit[col], fit[row], "x", color="black", ms=7, gid="fit")
            if i == k - 1:
                ax.set_xlabel(tex(col))
            if j == 0 and i > 0:
                ax.set_ylabel(tex(row))
            grid_style(ax)
    grid[0, 0].figure.suptitle(
        f"{post.law.name} posterior ({post.likelihood}): {n} draws; x / line: the multi-start fit", fontsize="medium"
    )
    return grid
