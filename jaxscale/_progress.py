"""A one-line progress bar on stderr, drawn only where stderr is a terminal (logs and pipes stay clean).

Example:
    >>> from jaxscale._progress import progress_bar
    >>> progress_bar("fit", "groups", enabled=False) is None
    True
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_bar(label: str, unit: str, *, enabled: bool | None = None) -> Callable[[int, int], None] | None:
    """``show(done, total)`` drawing ``label [####      ] done/total unit`` on stderr, or None when off.

    ``enabled=None`` (the default) turns it on only when ``sys.stderr.isatty()``.
    """
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None

    def show(done: int, total: int) -> None:
        bar = "#" * int(30 * done / max(total, 1))
        sys.stderr.write(f"\r{label} [{bar:<30}] {done}/{total} {unit}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
