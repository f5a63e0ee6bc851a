#!/usr/bin/env bash
# The benchmark suite on a lent accelerator machine, as one prepared command sized to the
# loan's limits (10 minutes a command, 15 minutes of device time a session, 8 files back).
#
#   bash benchmarks/device_run.sh        # from the repository root; there, timeout_s=600
#
# That machine's image already holds jax with CUDA, optax, pandas, scipy, pytest and
# pytest-benchmark, and nothing can be fetched there, so jaxscale is imported from the working
# tree (benchmarks/conftest.py puts the repository root first on sys.path), not installed. Each benchmark file writes its own JSON, so
# what finished comes back even when the time runs out; the scaling series (19 min of the
# 2-core CPU's full run) is left out. Files, under $OUT (benchmarks/device_out/ elsewhere):
# env.txt (devices and versions), log.txt (pytest's output), bench_<file>.json: 8 files, the most
# that comes back.
# Here it runs on the CPU too, e.g. JAXSCALE_BENCH_QUICK=1 JAXSCALE_BENCH_GROUPS=200
# JAXSCALE_BENCH_RESAMPLES=400 for a smoke run of the script itself.
set -uo pipefail
out="${OUT:-benchmarks/device_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
budget="${JAXSCALE_DEVICE_BUDGET_S:-540}" # leaves a minute of the 600 s for start-up and files
start=$SECONDS
{
    date -u
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
    "$py" -c "import jax, jaxlib, numpy, scipy; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__,
'numpy', numpy.__version__, 'scipy', scipy.__version__); print(jax.devices())"
} >"$out/env.txt" 2>&1
# Cheapest and most asked-for first. A newer jax there may warn where 0.10.2 did not: the
# warnings are reported, not turned into failures as the test suite does.
for name in frontier bootstrap float32 fit isoflop groups; do
    left=$((budget - (SECONDS - start)))
    if [ "$left" -lt 30 ]; then
        echo "benchmarks/test_bench_$name.py: skipped, $left s left" >>"$out/log.txt"
        continue
    fi
    timeout "$left" "$py" -m pytest "benchmarks/test_bench_$name.py" -q -s -p no:cacheprovider \
        -o filterwarnings=default --benchmark-json="$out/bench_$name.json" >>"$out/log.txt" 2>&1
    echo "benchmarks/test_bench_$name.py: exit $? at $((SECONDS - start)) s" >>"$out/log.txt"
done
# Then, with what is left: the GPU's own sizes against the CPU's (one block of lanes or blocks;
# calls in flight; fit_groups' solver), iterations of both solvers, and the CPU split into 1..16
# devices.
for script in "backend_sizes 10000 4000 one_block=0,1" "backend_sizes 10000 4000 calls_at_once=1,2" \
    "backend_sizes 10000 400 grouped_solver=bfgs,bfgs_mixed" solver_steps cpu_devices; do
    left=$((budget - (SECONDS - start)))
    if [ "$left" -lt 60 ]; then
        echo "benchmarks/$script: skipped, $left s left" >>"$out/log.txt"
        continue
    fi
    name="${script%% *}"
    # shellcheck disable=SC2086  # the script's arguments are meant to split
    timeout "$left" "$py" "benchmarks/$name.py" ${script#"$name"} >>"$out/log.txt" 2>&1
    echo "benchmarks/$script: exit $? at $((SECONDS - start)) s" >>"$out/log.txt"
done
