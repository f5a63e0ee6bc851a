"""The library's messages in the command line's words: Python keywords (``where=...``,
``fixed={...}``, ``read_runs(..., N=...)``) become the flags that set them.

Example:
    >>> cli_words("pass fixed={...} or narrow them with window=...")
    'pass --fix NAME=VALUE or narrow them with --window'
"""

from __future__ import annotations

import re

# The library's messages suggest Python keywords; the command line says its own flags instead.
_CLI_WORDS = [
    (r"read_runs\(\.\.\., ((?:\w+=\.\.\.(?:, )?)+)\)", lambda m: _flags(re.findall(r"(\w+)=", m.group(1)))),
    (r"map them in read_runs, e.g. read_runs\(df, (\w+)='your_column', \.\.\.\)", r"name the column, e.g. --\1 COL"),
    (r"read_runs\(\.\.\., check_duplicates=False\)", "--no-duplicate-check"),
    (r"read_runs\(\.\.\., group='col' or \['col', \.\.\.\]\)", "--by COL [COL ...]"),
    (r"read_runs\(\.\.\., (\w+)='[^']*'\)", r"--\1 COL"),
    (
        r"isoflop\(\.\.\., flops=\.\.\., N=\.\.\., D=\.\.\., loss=\.\.\., by=\.\.\., weights=\.\.\., budget=\.\.\.\)",
        "--flops --N --D --loss --by --budget",
    ),
    (
        r"budget_rtol=\.\.\., bins_per_decade=\.\.\. or budget=<column naming the budget>",
        "--budget-rtol R, --bins-per-decade K or --budget COL",
    ),  # fmt: skip
    (r"observation='median' and weighted=True", "--observation median and --weighted"),
    (r"add resample='noise', noise=\.\.\.", "add --noise SD"),
    (r"narrow them with window=\.\.\.", "narrow them with --window"),
    (r"use method='parabola'", "use --method parabola"),
    (
        r"envelope\(\.\.\., run=\.\.\., N=\.\.\., tokens=\.\.\., loss=\.\.\., flops=\.\.\., by=\.\.\.\)",
        "--run --N --tokens --loss --flops --by",
    ),
    (r"run=\[\.\.\.\] takes several columns", "--run takes several columns"),
    (r"fixed=\{\.\.\.\}", "--fix NAME=VALUE"),
    (r"small='report'", "--small report"),
    (r", or read it with pd\.read_csv\(path, sep=\.\.\.\) and pass the DataFrame", ""),
    (r"\(e\.g\. np\.log\(4\)\)", "(e.g. --window 1.39, that is ln 4)"),
    (
        r"pass them, e\.g\. frontier\(\.\.\., (\w+)=[^)]*\)",
        r"the command line cannot give \1; use js.frontier in Python",
    ),
]
_FLAGS = {"N": "--N", "D": "--D", "x": "--x", "U": "--U", "M": "--M", "loss": "--loss"}


def _flags(keys: list[str]) -> str:
    return " ".join(f"{_FLAGS[k]} COL" for k in keys if k in _FLAGS)


def cli_words(message: str, select: str = "--where") -> str:
    """``message`` with the library's Python hints (``fixed={...}``, ``where=...``) as this command's flags.

    ``select`` is the flag that picks rows (``--where``; ``--train`` for validate).
    """
    for pattern, replacement in _CLI_WORDS:
        message = re.sub(pattern, replacement, message)
    return re.sub(r"\bwhere=(?=['\"])", f"{select} ", message).replace("where=", select)
