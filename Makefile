# The two commands a new user runs: `make demo` and `make test`. Both create .venv/ and build.
# TORCH_SPEC picks the torch to install (pinned: an open range would pull a multi-GB CUDA build).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-stamp
BUILD_STAMP := $(VENV)/.build-stamp
NATIVE_SOURCES := $(shell find csrc -type f) setup.py pyproject.toml
NVCC := $(shell command -v nvcc 2>/dev/null)

.PHONY: demo test build pytest native-test cuda-check bench clean

$(DEPS_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(NATIVE_SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILD_STAMP)

demo: build
	$(VENV)/bin/addernet demo --overwrite   # trains beside the last run in runs/demo, swaps it in at the end

test: build native-test cuda-check pytest

# TRITON_INTERPRET=1 runs the Triton kernels on CPU tensors where no GPU is.
pytest: build
	TRITON_INTERPRET=1 $(PY) -m pytest -q tests

native-test:
	cmake -S . -B build/native -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja >/dev/null
	cmake --build build/native
	ctest --test-dir build/native --output-on-failure

# Compiles every CUDA kernel for sm_80 and sm_90 (build/cuda/ptxas_report.txt lists registers and
# spills), then the CUDA binding against torch's headers, checking that it calls only kernels the
# library defines. Needs the venv's torch for its headers, hence `build`.
cuda-check: build
ifeq ($(NVCC),)
	@echo "cuda-check skipped: nvcc not found"
else
	cmake -S . -B build/cuda -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja -DADDERNET_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) >/dev/null
	cmake --build build/cuda
	@echo "ptxas report: build/cuda/ptxas_report.txt"
	csrc/tests/check_cuda_binding.sh $(NVCC) $(PY) build/cuda/libaddernet_cuda_kernels.a build/cuda/binding
endif

bench: build
	$(PY) benchmarks/bench_ops.py --json benchmarks/results/bench_ops.json

clean:
	rm -rf build $(VENV) addernet/_C*.so *.egg-info
