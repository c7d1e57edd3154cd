#!/usr/bin/env bash
# Compile check of the CUDA binding (csrc/cuda/*.cu), the one CUDA source that includes torch
# headers, on a machine with nvcc but a CPU build of torch:
#   1. nvcc compiles each binding file to an object, as setup.py would with FORCE_CUDA=1;
#   2. every addernet::cuda function the objects call is defined by the raw kernel library.
# Linking the extension needs torch's CUDA libraries, which a CPU wheel lacks, so this stops at
# objects and symbols. The CPU wheel also lacks one header that c10's CUDA build generates,
# cuda_cmake_macros.h; when it is missing a stub with its single definition stands in.
#
# Usage: check_cuda_binding.sh NVCC PYTHON KERNEL_LIBRARY OUT_DIR
set -euo pipefail
nvcc=$1 python=$2 library=$3 out=$4
mkdir -p "$out/stub/c10/cuda/impl"

mapfile -t includes < <("$python" -c "from torch.utils.cpp_extension import include_paths
for p in include_paths(): print(p)")
abi=$("$python" -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))")
if [ ! -f "${includes[0]}/c10/cuda/impl/cuda_cmake_macros.h" ]; then
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$out/stub/c10/cuda/impl/cuda_cmake_macros.h"
fi
flags=(-c -std=c++17 -O1 -arch=sm_90 --expt-relaxed-constexpr -Xcompiler -fPIC -w
       -D_GLIBCXX_USE_CXX11_ABI="$abi" -DTORCH_EXTENSION_NAME=_C -Icsrc -I"$out/stub")
for dir in "${includes[@]}"; do flags+=(-isystem "$dir"); done

for src in csrc/cuda/*.cu; do
  obj="$out/$(basename "$src" .cu).o"
  echo "nvcc -c $src -> $obj"
  "$nvcc" "${flags[@]}" "$src" -o "$obj"
done

# Demangled signatures from "addernet::cuda::" on: what the binding calls, what the library has.
signatures() { nm -C "$@" | grep -o 'addernet::cuda::.*' | sort -u || true; }
needed=$(signatures --undefined-only "$out"/*.o)
defined=$(signatures --defined-only "$library")
missing=$(comm -23 <(echo "$needed") <(echo "$defined"))
if [ -z "$needed" ]; then
  echo "the binding objects call no addernet::cuda function: the check would prove nothing" >&2
  exit 1
fi
if [ -n "$missing" ]; then
  echo "the CUDA binding calls kernels the library does not define:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "CUDA binding: compiled; all $(echo "$needed" | wc -l) addernet::cuda functions it calls are defined"
