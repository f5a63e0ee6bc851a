"""Benchmarks run with x64 on, like the tests; they reuse the tests' scipy reference."""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
