#!/usr/bin/env bash
# bench/gpu.sh: one command for a CUDA machine, about 8 minutes at most. From the repository root it runs
#   1. the tests marked `gpu` (pytest -m gpu on the files of tests/ that use the marker),
#   2. bench.training --device cuda: GPT-2 small shape (d 768, 12 layers, T 1024, B 8), fp32, bf16 and
#      compile+bf16 rows of fmblocks and HF, the Trainer in compile+bf16, flash SDPA in the bf16 rows,
#   3. bench.attention --device cuda: bf16 q, k, v, T up to 16k, "sdpa" under the flash kernel,
# each under `timeout`, and writes bench/results/training-cuda.* and attention-cuda.* (the CPU results
# stay as they are) and a log per step under runs/gpu/. A step that fails or runs out of time does not
# stop the others; the script then says which and exits 1.
#
# Needs the project's venv with a CUDA build of torch: `make gpu` creates .venv the way `make test` does
# (pip install -e ".[test]") and runs this script; `bash bench/gpu.sh` uses an existing .venv. Settings
# (environment): PYTHON (default .venv/bin/python), RESULTS (bench/results), LOGS (runs/gpu), DEVICE
# (cuda; cpu with small sizes only checks the script), TRAIN_SIZES, ATTENTION_LENGTHS, and the time
# limits in seconds TESTS_S, TRAIN_S, ATTENTION_S (their sum, 460 s, keeps the whole under 8 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${RESULTS:-bench/results}
LOGS=${LOGS:-runs/gpu}
DEVICE=${DEVICE:-cuda}
TRAIN_SIZES=${TRAIN_SIZES:-"--d-model 768 --layers 12 --heads 12 --seq 1024 --batch 8 --steps 10"}
ATTENTION_LENGTHS=${ATTENTION_LENGTHS:-"1024 4096 16384"}
TESTS_S=${TESTS_S:-100}
TRAIN_S=${TRAIN_S:-230}
ATTENTION_S=${ATTENTION_S:-130}

if [ ! -x "$PYTHON" ]; then
  echo "gpu.sh: no Python at $PYTHON: run 'make gpu' (creates .venv, then runs this script) or set PYTHON" >&2
  exit 2
fi
if [ "$DEVICE" = cuda ]; then
  "$PYTHON" - <<'EOF' || { echo "gpu.sh: this torch sees no CUDA device; nothing was run" >&2; exit 2; }
import sys, torch
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) has no CUDA device", file=sys.stderr)
    sys.exit(1)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}")
EOF
fi
mkdir -p "$LOGS" "$RESULTS"
touch "$LOGS/.started"  # results newer than this were written by this run
mapfile -t GPU_TESTS < <(grep -rlE --include='*.py' 'pytest\.mark\.gpu' tests | sort)
if [ "${#GPU_TESTS[@]}" -eq 0 ]; then
  echo "gpu.sh: no test file in tests/ uses @pytest.mark.gpu" >&2
  exit 2
fi

summary=()
failures=0
# step NAME SECONDS COMMAND...: run COMMAND under `timeout`, its output to the terminal and to LOGS/NAME.log
step() {
  local name=$1 limit=$2 rc=0 start=$SECONDS
  shift 2
  echo "== $name (at most ${limit} s): $*"
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log" || rc=$?
  local took=$((SECONDS - start)) status=ok
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="timed out after ${limit} s"
  elif [ "$rc" -ne 0 ]; then status="failed (exit $rc)"
  elif [ "$name" = tests ] && [ "$DEVICE" = cuda ] && grep -qE '[0-9]+ skipped' "$LOGS/$name.log"; then
    status="failed (gpu tests were skipped on a CUDA machine)"; rc=1
  fi
  [ "$rc" -eq 0 ] || failures=$((failures + 1))
  summary+=("$(printf '%-10s %-52s %4d s  log %s' "$name" "$status" "$took" "$LOGS/$name.log")")
}

# shellcheck disable=SC2086  # TRAIN_SIZES and ATTENTION_LENGTHS are lists of words
step tests "$TESTS_S" "$PYTHON" -m pytest -q -rs -m gpu -p no:cacheprovider "${GPU_TESTS[@]}"
# shellcheck disable=SC2086
step training "$TRAIN_S" "$PYTHON" -m bench.training --device "$DEVICE" $TRAIN_SIZES \
  --settings fp32 bf16 compile-bf16 --trainer-setting compile-bf16 --sdpa flash --results "$RESULTS"
# shellcheck disable=SC2086
step attention "$ATTENTION_S" "$PYTHON" -m bench.attention --device "$DEVICE" --dtype bfloat16 --sdpa flash \
  --lengths $ATTENTION_LENGTHS --repeats 5 --results "$RESULTS"

suffix=$([ "$DEVICE" = cpu ] && echo "" || echo "-$DEVICE")
echo "== gpu.sh done in $SECONDS s"
printf '%s\n' "${summary[@]}"
for name in training attention; do
  for file in "$RESULTS/$name$suffix.json" "$RESULTS/$name$suffix.png"; do
    if [ "$file" -nt "$LOGS/.started" ]; then echo "results: $file"; else echo "results: $file NOT written by this run"; fi
  done
done
if [ "$failures" -ne 0 ]; then
  echo "gpu.sh: $failures step(s) did not succeed (see above)" >&2
  exit 1
fi
