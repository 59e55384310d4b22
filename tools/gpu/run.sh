#!/usr/bin/env bash
# Issue 17's checks on a GPU machine without Node, from the bundle of tools/gpu/bundle.sh (.dev/,
# carried with dist/ and build/Release/): `npm run test:gpu`'s tests, the bench commands of
# test/gpu/README.md with their CUDA copy baselines, registration of device memory up to 1 GiB,
# the Llama-3-8B 4,096-token hand-off in device memory, and that model's prefill on this GPU (the
# hand-off's denominator; PyTorch and transformers from the machine, random bf16 weights).
#
# Every step has its own deadline inside one overall deadline (KVWIRE_GPU_DEADLINE_S, default
# 480 s), so the script always ends, and everything it wrote is packed into $OUT/gpu-results.tgz
# after each step (the device tool brings back at most 8 files). Usage: bash tools/gpu/run.sh [steps]
# (default: all; e.g. `bash tools/gpu/run.sh test register`).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
R=/tmp/kvwire-gpu-results
T=/tmp/kvwire-gpu
rm -rf "$R" && mkdir -p "$R" "$T/bin"
END=$((SECONDS + ${KVWIRE_GPU_DEADLINE_S:-480}))
STEPS=${*:-info test register ipc staging mixed host model prefill}

pack() { tar -czf "$OUT/gpu-results.tgz.tmp" -C "$R" . && mv "$OUT/gpu-results.tgz.tmp" "$OUT/gpu-results.tgz"; }
left() { echo $((END - SECONDS)); }
# step NAME CAP_S CMD...: runs CMD with min(CAP_S, time left) seconds, output in $R/NAME.log.
step() {
  local name=$1 cap=$2 t
  shift 2
  t=$(left)
  ((t > cap)) && t=$cap
  if ((t < 10)); then
    echo "== $name skipped: the overall deadline is near" | tee -a "$R/steps.log"
    return
  fi
  echo "== $(date +%T) $name (at most ${t}s): $*" | tee -a "$R/steps.log"
  local s=$SECONDS
  timeout -k 5 "$t" "$@" >"$R/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc in $((SECONDS - s))s" | tee -a "$R/steps.log"
  tail -n 25 "$R/$name.log"
  pack
}
want() { [[ " $STEPS " == *" $1 "* ]]; }

# Unpack: Python does it (the machine may have no xz).
python3 - "$T" <<'PY' || exit 1
import lzma, os, shutil, sys, tarfile
t = sys.argv[1]
if not os.path.exists(f"{t}/bin/node"):
    with lzma.open(".dev/node.xz") as src, open(f"{t}/bin/node", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.chmod(f"{t}/bin/node", 0o755)
if not os.path.exists("node_modules/vitest/package.json"):
    with tarfile.open(".dev/node_modules.tar.xz", "r:xz") as tf:
        tf.extractall(".")
PY
export PATH=$T/bin:$PATH
export LD_LIBRARY_PATH=$ROOT/.dev/ucx${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export UCX_MODULE_DIR=$ROOT/.dev/ucx/ucx
KV="node bin/kvwire.js"

if want info; then
  step info 60 bash -c "nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id,clocks.max.sm --format=csv; \
    grep PRETTY /etc/os-release; uname -r; nproc; free -g; node --version; cat /usr/local/cuda/version.json 2>/dev/null | head -8; ldd build/Release/kvwire.node; $KV info"
fi
if want prefill; then
  # The prefill timing runs beside the tests (they assert bytes, not speed), never beside a bench.
  (timeout -k 5 200 python3 tools/gpu/prefill.py 4096 >"$R/prefill.log" 2>&1; echo "rc=$?" >>"$R/prefill.log") &
  PREFILL=$!
fi
want test && step test-gpu 240 node node_modules/vitest/vitest.mjs run --config vitest.gpu.config.ts --reporter=verbose
if want prefill; then
  wait "$PREFILL"
  echo "== prefill:" && tail -n 5 "$R/prefill.log"
  pack
fi
want register && step register 60 $KV bench --register --memory cuda --transports sm --max-region 1G --markdown "$R/register.md" --json --quiet
# The README's commands, with a larger byte budget per row than the host default (GPU rows are fast).
# The IPC and model rows run without the gather kernel (the default), with it (KVWIRE_CUDA_GATHER=1,
# opt-in until verified here), and without it again: the A/B of one run, with its spread beside it.
B="--budget 2G"
if want ipc; then
  step cuda-ipc 90 $KV bench --memory cuda --cuda-path ipc --transports sm --sizes 1M,4M,16M --batches 1,8,32 $B --markdown "$R/cuda-ipc.md"
  step cuda-ipc-gather 90 env KVWIRE_CUDA_GATHER=1 $KV bench --memory cuda --cuda-path ipc --transports sm --sizes 1M,4M,16M --batches 1,8,32 $B --check --markdown "$R/cuda-ipc-gather.md"
  step cuda-ipc-2 90 $KV bench --memory cuda --cuda-path ipc --transports sm --sizes 1M,4M,16M --batches 1,8,32 $B --markdown "$R/cuda-ipc-2.md"
fi
want staging && step cuda-staging 100 $KV bench --memory cuda --cuda-path staging --transports sm,tcp --sizes 1M,4M,16M --batches 1,8 $B --markdown "$R/cuda-staging.md"
want mixed && step cuda-mixed 45 $KV bench --initiator-memory cuda --target-memory allocate --cuda-path staging --transports sm --sizes 16M --batches 1,8 $B --markdown "$R/cuda-mixed.md"
# Host memory over the same transports: what the wire under staging moves by itself.
want host && step host-wire 60 $KV bench --memory allocate --transports sm,tcp --sizes 1M,4M,16M --batches 1,8 --markdown "$R/host-wire.md"
if want model; then
  step model 60 $KV bench --model llama-3-8b --tokens 4096 --memory cuda --transports sm --markdown "$R/model.md"
  step model-gather 90 env KVWIRE_CUDA_GATHER=1 $KV bench --model llama-3-8b --tokens 4096 --memory cuda --transports sm --markdown "$R/model-gather.md"
  step model-gather-check 90 env KVWIRE_CUDA_GATHER=1 $KV bench --model llama-3-8b --tokens 4096 --memory cuda --transports sm --iters 3 --warmup 1 --check
  step model-2 60 $KV bench --model llama-3-8b --tokens 4096 --memory cuda --transports sm --markdown "$R/model-2.md"
fi
echo "== done, $(left)s of the deadline left" | tee -a "$R/steps.log"
# The summary last (the device tool returns the end of the output): suite, targets, hand-off rows.
{
  echo "== summary"
  grep -h "rc=" "$R/steps.log"
  grep -hE "^ +(Test Files|Tests) " "$R/test-gpu.log" 2>/dev/null
  for f in "$R"/*.log; do
    grep -hE "^(PASS|FAIL|BELOW) " "$f" 2>/dev/null | sed "s|^|$(basename "$f" .log): |"
  done
  for f in "$R"/model*.log; do
    grep -hE "^sm +(READ|WRITE) " "$f" 2>/dev/null | sed "s|^|$(basename "$f" .log): |"
  done
  tail -n 2 "$R/prefill.log" 2>/dev/null
} | tee "$R/summary.txt"
pack
