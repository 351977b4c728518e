#!/bin/bash
# alternate XLA flag settings on the single-conv microbenchmark
cd "$(dirname "$0")"
for rep in 1 2; do
for F in "" "--xla_cpu_use_thunk_runtime=false" "--xla_cpu_multi_thread_eigen=false" "--xla_cpu_use_onednn=true" "--xla_cpu_use_xnnpack=true" "--xla_cpu_experimental_xnn_fusion_type=XNN_FUSION_TYPE_REDUCE" ; do
  XLA_FLAGS="$F" NOTORCH=1 IMPLS=xla_nhwc,cvjp,im2col timeout 300 python micro_conv.py 2>&1 | grep -v "^W0\|^I0" | tail -4
done
done
