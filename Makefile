# The two commands a new user runs: `make demo` and `make test`. Both create .venv/ and build.
# TORCH_SPEC picks the torch to install (pinned: an open range would pull a multi-GB CUDA build).
PYTHON ?= python3
SHELL := /bin/bash
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-stamp
BUILD_STAMP := $(VENV)/.build-stamp
NATIVE_SOURCES := $(shell find csrc -type f) setup.py pyproject.toml
NVCC := $(shell command -v nvcc 2>/dev/null)
# Parallel jobs for ctest and pytest: the cores, at most 4 (each pytest worker imports torch).
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
# One CMake build of the raw kernels: the native tests, and (where nvcc is) the CUDA kernels and
# their compile check, so that each CPU kernel compiles once here (setup.py compiles the extension).
KERNELS := build/kernels
CMAKE_CONFIG := -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja \
	$(if $(NVCC),-DADDERNET_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC))

.PHONY: demo test build pytest kernels native-test cuda-check cuda-emu-asan bench clean

$(DEPS_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# The extension's compile shows its progress (ninja's [n/N] per file) rather than minutes of
# silence; the whole log, warnings included, is in build/pip-build.log.
$(BUILD_STAMP): $(DEPS_STAMP) $(NATIVE_SOURCES)
	@mkdir -p build
	$(PY) -m pip install -v --no-build-isolation --no-deps -e . 2>&1 | tee build/pip-build.log \
	  | grep --line-buffered -E '\[[0-9]+/[0-9]+\]|[Ee]rror|Successfully installed'; exit $${PIPESTATUS[0]}
	touch $@

build: $(BUILD_STAMP)

demo: build
	$(VENV)/bin/addernet demo --overwrite   # trains beside the last run in runs/demo, swaps it in at the end

test: build native-test cuda-check pytest

# TRITON_INTERPRET=1 runs the Triton kernels on CPU tensors where no GPU is.
pytest: build
	TRITON_INTERPRET=1 $(PY) -m pytest -q -n $(JOBS) --dist worksteal tests

kernels:
	cmake -S . -B $(KERNELS) $(CMAKE_CONFIG) >/dev/null
	cmake --build $(KERNELS)

native-test: kernels
	ctest --test-dir $(KERNELS) --output-on-failure -j $(JOBS)

# `kernels` compiled every CUDA kernel for sm_80 and sm_90 (build/kernels/ptxas_report.txt lists
# registers and spills); this compiles the CUDA binding against torch's headers, checking that it
# calls only kernels the library defines. Needs the venv's torch for its headers, hence `build`.
cuda-check: build kernels
ifeq ($(NVCC),)
	@echo "cuda-check skipped: nvcc not found"
else
	@echo "ptxas report: $(KERNELS)/ptxas_report.txt"
	csrc/tests/check_cuda_binding.sh $(NVCC) $(PY) $(KERNELS)/libaddernet_cuda_kernels.a $(KERNELS)/binding
endif

# The emulated CUDA kernel test (csrc/tests/emu, run by native-test when the CUDA headers exist)
# built with AddressSanitizer + UBSan instead of the shared-memory checks: out-of-bounds global
# and shared accesses, undefined behaviour. Needs no GPU; not part of `make test` (see README).
cuda-emu-asan:
	cmake -S . -B build/emu-asan -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja -DADDERNET_CUDA_EMU_SANITIZE=address,undefined >/dev/null
	cmake --build build/emu-asan --target test_emu_kernels cuda_emu_test_cuda_kernels
	build/emu-asan/cuda_emu_test_cuda_kernels
	build/emu-asan/test_emu_kernels --tapsum-max-blocks 1500

bench: build
	$(PY) benchmarks/bench_ops.py --json benchmarks/results/bench_ops.json

clean:
	rm -rf build $(VENV) addernet/_C*.so *.egg-info
