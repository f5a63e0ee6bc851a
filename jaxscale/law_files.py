"""Laws of the user's own, named ``"module:name"`` or ``"path/to/file.py:name"`` (``--law`` on
the command line, :func:`jaxscale.get_law` in Python): loaded once per spec, with errors that
name the spec and what to change.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from .laws import Law

_LOADED: dict[tuple, Law] = {}
_HOW = "a Law, or a function of no arguments returning one (e.g. one that calls jaxscale.make_law)"


def load_law_spec(spec: str) -> Law:
    """The law that ``spec`` names: ``"module:name"`` or ``"path/to/file.py:name"``.

    ``name`` (dotted for an attribute's attribute) is a :class:`Law`, or a function of no arguments
    that returns one. The module is imported from ``sys.path``; a file (a path ending in ``.py``)
    is run from where it is. A law is loaded once per spec (a file's again when it changes), so
    that fits with the same spec share compiled kernels. Raises ``ValueError`` naming the spec
    and what to change.

    Example:
        >>> load_law_spec("jaxscale.laws:POWER").formula
        'L(x) = E + A / x^alpha'
    """
    source, _, attr = spec.rpartition(":")
    if not source or not all(part.isidentifier() for part in attr.split(".")):
        raise ValueError(
            f"law {spec!r}: a law of your own is 'module:name' or 'path/to/file.py:name', name being {_HOW}"
        )
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source).resolve()
        if not path.is_file():
            raise ValueError(f"law {spec!r}: no such file {source!r}: give the path to a .py file, e.g. laws.py:my_law")
        key: tuple = (str(path), path.stat().st_mtime_ns, attr)
        if key not in _LOADED:
            _LOADED[key] = _law_from(spec, _run_file(spec, path), attr, f"file {path.name!r}")
    else:
        key = (source, attr)
        if key not in _LOADED:
            _LOADED[key] = _law_from(spec, _import(spec, source), attr, f"module {source!r}")
    return _LOADED[key]


def _import(spec: str, name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is None or not (name == err.name or name.startswith(err.name + ".")):  # one that it imports
            raise _raised(spec, f"importing module {name!r}", err) from err
        raise ValueError(
            f"law {spec!r}: no module named {err.name!r} on the Python path: set PYTHONPATH to its folder, or give "
            f"its file, e.g. path/to/{name.rpartition('.')[2]}.py:{spec.rpartition(':')[2]}"
        ) from err
    except Exception as err:
        raise _raised(spec, f"importing module {name!r}", err) from err


def _run_file(spec: str, path: Path):
    """Run ``path`` as a module of its own, kept in ``sys.modules`` under a name no import uses."""
    name = f"_jaxscale_law_{path.stem}_{abs(hash(str(path))):x}"
    found = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module  # dataclasses and pickling look their module up while it runs
    try:
        found.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise _raised(spec, f"running {path.name}", err) from err
    return module


def _raised(spec: str, doing: str, err: Exception) -> ValueError:
    return ValueError(f"law {spec!r}: {doing} raised {type(err).__name__}: {err}. Fix it there and try again")


def _law_from(spec: str, module, attr: str, what: str) -> Law:
    found = module
    for part in attr.split("."):
        if not hasattr(found, part):
            laws = [k for k, v in vars(module).items() if isinstance(v, Law)]
            funcs = [k for k, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__]
            raise ValueError(f"law {spec!r}: {what} has no {attr!r}; its Law objects: {laws}, its functions: {funcs}")
        found = getattr(found, part)
    if isinstance(found, Law):
        return found
    if not callable(found):
        raise ValueError(f"law {spec!r} is a value of type {type(found).__name__}; give {_HOW}")
    try:
        inspect.signature(found).bind()
    except TypeError:
        raise ValueError(f"law {spec!r} takes arguments {inspect.signature(found)}; give {_HOW}") from None
    except ValueError:  # no signature to inspect: calling it will say
        pass
    try:
        law = found()
    except Exception as err:
        raise _raised(spec, f"calling {attr}()", err) from err
    if not isinstance(law, Law):
        raise ValueError(f"law {spec!r}: {attr}() returned a value of type {type(law).__name__}; give {_HOW}")
    return law
