"""What the command line prints and writes: JSON documents, tables, ``--out`` files, ``--plot`` figures.

Every document is strictly valid JSON (NaN and infinities become null). Files are written whole or
not at all: into a temporary file beside the target, then renamed over it (``os.replace`` is atomic),
so a reader, a crash, Ctrl-C or a second command writing the same path never sees half a file. An
existing file is replaced only with ``--force``, and never when it is one of the command's inputs.

Example:
    >>> import numpy as np
    >>> from jaxscale.results import json_safe
    >>> json_safe(np.float64(2.5)), json_safe(float("nan")), json_safe(np.bool_(True))
    (2.5, None, True)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

OUT_FORMATS = (".json", ".csv")
PLOT_FORMATS = (".png", ".pdf", ".svg")


def json_safe(v: Any) -> Any:
    """:func:`jaxscale.results.json_safe`, imported when first used (that module imports JAX)."""
    from .results import json_safe as safe

    return safe(v)


def dumps(doc: Any, **kwargs: Any) -> str:
    return json.dumps(doc, allow_nan=False, **kwargs)


def records(table: pd.DataFrame, index: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON-safe dicts (its index as column ``index`` when named)."""
    if index is not None:
        table = table.rename_axis(index).reset_index()
    return [{str(k): json_safe(v) for k, v in row.items()} for row in table.to_dict("records")]


def check_path(
    path: str | None, formats: tuple[str, ...], option: str, *, force: bool = False, inputs: Sequence[str] = ()
) -> Path | None:
    """``path`` as a Path after checking its extension, its folder, and that it may be written, before any work.

    Refuses a path that is one of ``inputs`` (even with ``force``) and an existing file unless ``force``.
    """
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() not in formats:
        raise ValueError(
            f"{option} {path!r}: the format follows the file's extension, which must be "
            f"one of {', '.join(formats)} (e.g. {option} results{formats[0]})"
        )
    if not out.parent.is_dir():
        raise ValueError(f"{option} {path!r}: folder {str(out.parent)!r} does not exist; create it first")
    for source in inputs:
        if same_file(out, source):
            raise ValueError(
                f"{option} {path!r} is the input file {source!r}: writing there would replace your runs with the "
                f"result. Choose another name, e.g. {option} {out.with_stem(out.stem + '_fit').name}"
            )
    if out.is_dir():
        raise ValueError(f"{option} {path!r} is a folder: give a file name, e.g. {option} {path}/results{formats[0]}")
    if out.exists() and not force:
        raise ValueError(f"{option} {path!r} exists: add --force to replace it, or choose another name")
    return out


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (through links and ``..``), existing or not."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


# Temporary files being written; on Ctrl-C the command removes them (under the lock) before it exits.
_PENDING: set[Path] = set()
_LOCK = threading.Lock()


def discard_pending() -> None:
    """Remove every temporary file still being written (for an interrupt that ends the process)."""
    with _LOCK:
        for tmp in list(_PENDING):
            tmp.unlink(missing_ok=True)
        _PENDING.clear()


def _mode(path: Path) -> int:
    """The permissions the file would get from ``open`` (or keeps, when replaced); mkstemp's are 0600."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; on success it is renamed to ``path`` in one step.

    Without ``force`` an existing ``path`` (one that appeared while the command ran) is left as it
    is and ``ValueError`` raised. On any exception, or an interrupt, the temporary file is removed.
    Two commands writing the same ``path`` with ``force``: the last rename wins, and the file is
    always one whole result.
    """
    with _LOCK:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".part{path.suffix}")
        os.close(fd)
        tmp = Path(name)
        _PENDING.add(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        with _LOCK:
            os.chmod(tmp, _mode(path))
            if force:
                os.replace(tmp, path)
            else:
                _link_new(tmp, path)
    finally:
        with _LOCK:
            tmp.unlink(missing_ok=True)
            _PENDING.discard(tmp)


def _link_new(tmp: Path, path: Path) -> None:
    """Give ``tmp``'s contents the name ``path`` only if no file has it (atomically where links work)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ValueError(
            f"{str(path)!r} was created while this command ran (by another command?); it is left as it is. "
            "Add --force to replace it"
        ) from None
    except OSError:  # a filesystem without hard links: check, then rename
        if path.exists():
            raise ValueError(f"{str(path)!r} was created while this command ran; add --force to replace it") from None
        os.replace(tmp, path)


def check_plotting() -> None:
    """Fail early, with the fix, when matplotlib is missing; draw off-screen (the CLI only writes files)."""
    try:
        import matplotlib
    except ImportError as err:
        raise ValueError("--plot needs matplotlib: install it with pip install 'jaxscale[plots]'") from err
    matplotlib.use("Agg")


def write_out(path: Path | None, doc: Any, table: pd.DataFrame, *, force: bool = False) -> None:
    """``--out``: the JSON document (``.json``) or the table (``.csv``), written whole or not at all."""
    if path is None:
        return
    with atomic_path(path, force=force) as tmp:
        if path.suffix.lower() == ".json":
            tmp.write_text(dumps(doc, indent=2) + "\n")
        else:
            table.to_csv(tmp, index=False)


def bootstrap_doc(boot, level: float) -> dict[str, Any]:
    table = boot.ci(level)
    return {
        "n_resamples": boot.n_resamples,
        "level": level,
        "seed": boot.seed,
        "failed_fraction": boot.failed_fraction,
        "ci": {name: [json_safe(float(row.lower)), json_safe(float(row.upper))] for name, row in table.iterrows()},
        "se": {name: json_safe(float(row.se)) for name, row in table.iterrows()},
        "n_unidentified": boot.n_unidentified,
        # Intervals not to trust as they stand (zero width, excluding their estimate): see BootstrapResult.ci.
        "warnings": {name: row.warning for name, row in table.iterrows() if row.warning},
    }


def fit_doc(result, boot=None, level: float = 0.95) -> dict[str, Any]:
    """The ``--json`` object of one fit (``FitResult.to_dict()``, plus ``bootstrap``)."""
    doc = result.to_dict()
    if boot is not None:
        doc["bootstrap"] = bootstrap_doc(boot, level)
    return doc


def fit_row(result, boot=None, level: float = 0.95) -> pd.DataFrame:
    """One fit as a one-row table with the columns of a ``fit_groups`` row (less the group keys)."""
    from .groups import result_row

    return pd.DataFrame([result_row(result, boot, level)])


def quantities(law) -> tuple[list[str], list[str]]:
    """The law's natural parameter names and derived quantity names."""
    return list(law.natural), list(law.derived_names)


def group_docs(table: pd.DataFrame, by: list[str], law, *, n_resamples: int, level: float, seed: int) -> list[dict]:
    """One ``--json`` object per row of a ``fit_groups`` table, shaped like :func:`fit_doc`, plus ``group``."""
    natural, derived = quantities(law)
    docs = []
    for g, row in enumerate(table.to_dict("records")):
        doc = {
            "law": row["law"],
            "n_points": int(row["n_points"]),
            "objective": json_safe(row["objective"]),
            "converged": bool(row["converged"]),
            "status": row["status"],
            "params": {k: json_safe(row[k]) for k in natural},
            "derived": {k: json_safe(row[k]) for k in derived},
            "diagnostics": {k: json_safe(row[k]) for k in ("steps", "grad_norm", "n_starts", "n_at_optimum")},
            "unidentified": [n for n in str(row.get("unidentified", "")).split(",") if n],
            "unidentified_reason": row.get("unidentified_reason", ""),
        }
        if n_resamples:
            doc["bootstrap"] = {
                "n_resamples": int(row["n_resamples"]),
                "level": level,
                "seed": seed + g,  # the g-th group resampled as bootstrap(group, seed=seed + g, staged=False)
                "failed_fraction": json_safe(row["boot_failed_fraction"]),
                "ci": {k: [json_safe(row[f"{k}_lower"]), json_safe(row[f"{k}_upper"])] for k in natural + derived},
            }
        doc["group"] = {c: json_safe(row[c]) for c in by}
        docs.append(doc)
    return docs


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def groups_text(table: pd.DataFrame, by: list[str], law, *, n_resamples: int, level: float) -> str:
    """A readable report of a ``fit_groups`` table: the fits, then (with a bootstrap) their intervals."""
    natural, derived = quantities(law)
    n_ok = int(table["converged"].sum())
    lines = [f"{law.name} law fitted to {len(table)} groups by {by}: {n_ok} converged"]
    cols = [*by, "n_points", *natural, *derived, "objective", "status"]
    if "unidentified" in table and (table["unidentified"] != "").any():
        cols.append("unidentified")  # the parameters each group's runs do not determine
    lines.append(table[cols].to_string(index=False, float_format=_fmt))
    if n_resamples:
        ci = table[by].copy()
        for k in natural + derived:
            ci[k] = [
                f"[{_fmt(lo)}, {_fmt(hi)}]" for lo, hi in zip(table[f"{k}_lower"], table[f"{k}_upper"], strict=True)
            ]
        ci["failed"] = [f"{f:.1%}" for f in table["boot_failed_fraction"]]
        if "boot_warning" in table and (table["boot_warning"] != "").any():
            ci["warning"] = table["boot_warning"]  # zero-width intervals, or ones excluding their estimate
        lines.append(f"\n{level:.0%} percentile intervals from {n_resamples} resamples per group (failed: excluded)")
        lines.append(ci.to_string(index=False))
    return "\n".join(lines)


def save_fit_plot(path: Path, result, runs, boot=None, level: float = 0.95, *, force: bool = False) -> None:
    """``fit --plot``: the law against its runs (with residuals), and the bootstrap histograms below."""
    import matplotlib.pyplot as plt

    from .plotting import plot_bootstrap, plot_fit, save_figure

    if boot is None:
        axes = plot_fit(result, runs)
    else:
        names = list(result.law.natural)
        ncols = min(len(names), 3)
        nrows = -(-len(names) // ncols)
        fig = plt.figure(layout="constrained", figsize=(3.3 * ncols + 0.4, 5.6 + 2.9 * nrows))
        top, bottom = fig.subfigures(2, 1, height_ratios=(5.6, 2.9 * nrows))
        axes = top.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        plot_fit(result, runs, axes=axes)
        grid = bottom.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in grid[len(names) :]:
            ax.remove()
        plot_bootstrap(boot, names, level=level, axes=list(grid[: len(names)]))
    with atomic_path(path, force=force) as tmp:
        save_figure(axes, tmp)
    plt.close("all")


def save_rollout_plot(path: Path, table: pd.DataFrame, *, force: bool = False) -> None:
    import matplotlib.pyplot as plt

    from .plotting import save_figure
    from .rollout import plot_rollout

    ax = plot_rollout(table)
    with atomic_path(path, force=force) as tmp:
        save_figure(ax, tmp)
    plt.close("all")


def save_frontier_plot(path: Path, table: pd.DataFrame, *, force: bool = False) -> None:
    import matplotlib.pyplot as plt

    from .plotting import plot_frontier, save_figure

    axes = plot_frontier(table)
    with atomic_path(path, force=force) as tmp:
        save_figure(axes, tmp)
    plt.close("all")
