"""``import jaxscale`` and the command line's parsing load no JAX: names are imported on first use.

So ``jaxscale --help`` and argument errors answer at once, and the Ctrl-C handler is in place
before JAX (whose import a SIGINT would interrupt with a traceback) starts loading.
"""

import subprocess
import sys
from pathlib import Path

import pytest

import jaxscale as js


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_jaxscale_loads_no_jax_until_a_name_is_used():
    out = python(
        "import sys, jaxscale as js\n"
        "print('jax' in sys.modules, 'pandas' in sys.modules)\n"
        "js.get_law('kaplan')\n"  # the zoo's laws are registered on first lookup
        "print('jax' in sys.modules, js.get_law('kaplan').name)"
    )
    assert out.splitlines() == ["False False", "True kaplan"]


def test_help_and_parse_errors_load_no_jax_and_the_interrupt_handler_comes_first():
    out = python(
        "import sys, signal, jaxscale.cli as cli\n"
        "cli._exit_on_interrupt()\n"
        "args = cli._parser().parse_args(['fit', 'runs.csv', '--resamples', '10'])\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "print(code, args.resamples, signal.getsignal(signal.SIGINT) is not signal.default_int_handler,"
        " 'jax' in sys.modules)"
    )
    assert out.splitlines()[-1] == "0 10 True False"


def test_functions_that_share_their_module_name_stay_functions():
    import jaxscale.bootstrap
    import jaxscale.envelope
    import jaxscale.fit  # noqa: F401  (importing a submodule sets it on the package)

    for name in ("fit", "bootstrap", "envelope", "isoflop", "frontier", "validate"):
        assert callable(getattr(js, name)) and not isinstance(getattr(js, name), type(sys)), name
    assert sys.modules["jaxscale.fit"].fit is js.fit
    assert set(js.__all__) <= set(dir(js)) and "functional" in js.__all__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'fitt'"):
        js.fitt  # noqa: B018


def test_the_command_keeps_compiled_kernels_in_its_cache_dir(tmp_path):
    """JAXSCALE_CACHE_DIR (default ~/.cache/jaxscale) holds the command's compiled kernels; empty turns it off."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    command = [sys.executable, "-m", "jaxscale.cli", "example", "chinchilla"]
    for cache, expect_files in ((tmp_path / "cache", True), ("", False)):
        done = subprocess.run(
            command, env=env | {"JAXSCALE_CACHE_DIR": str(cache)}, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0 and "converged in" in done.stdout, done.stderr
        assert (cache != "" and any(Path(cache).iterdir())) == expect_files
