#!/usr/bin/env bash
# GPU figures for BENCHMARKS.md section 8: the NASWOT and SETN benchmarks with the PyTorch peer on
# the same GPU (xautodl on CUDA), on a machine with jax[cuda], torch (CUDA) and xautodl installed.
# Each step runs on its own (a failing step does not stop the others) and writes OUT/<step>.json
# and OUT/<step>.log. Both libraries run with their default float32 GPU settings (TF32 allowed in
# convolutions: JAX's default precision, torch.backends.cudnn.allow_tf32=True).
#
# Usage: bash benchmarks/run_gpu.sh OUT [steps...]   steps: naswot naswot16 select select1 iteration
set -u
out=${1:?usage: run_gpu.sh OUT [steps...]}
shift
steps=${*:-naswot naswot16 select select1 iteration}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
for step in $steps; do
  case $step in
    naswot)    cmd=(bench_naswot.py --archs 256 --block 64 --chunk 1) ;;
    naswot16)  cmd=(bench_naswot.py --archs 256 --block 64 --chunk 16) ;;
    select)    cmd=(bench_setn.py --cands 100 --reps 15 --skip iteration) ;;  # backend default chunk (16)
    select1)   cmd=(bench_setn.py --cands 100 --reps 15 --skip iteration --chunk 1) ;;
    iteration) cmd=(bench_setn.py --skip selection --reps 30) ;;
    *) echo "unknown step $step" >&2; continue ;;
  esac
  echo "== $step: ${cmd[*]}"
  t0=$(date +%s)
  timeout 300 python3 "$here/${cmd[0]}" "${cmd[@]:1}" --torch-device cuda --out "$out/$step.json" >"$out/$step.log" 2>&1
  echo "   rc=$? in $(($(date +%s) - t0)) s"
  tail -n 4 "$out/$step.log"
done
