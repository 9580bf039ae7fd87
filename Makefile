# The two commands of the README. Both install missing Debian packages first (needs root or
# sudo), configure and build with CMake presets, then run.
#   make run    build, list devices, verify every kernel on every backend, then start a silo and
#               run the demo workload for 10 seconds
#   make test   build, then run every test with CTest
# CI=true selects the "ci" preset (warnings are errors) and also builds and tests the "ci-nocuda"
# preset (as on a machine without the CUDA toolkit).
PRESET ?= $(if $(filter true,$(CI)),ci,release)
BUILD_DIR := build/$(PRESET)
JOBS ?= $(shell nproc)
export POCL_CACHE_DIR ?= $(CURDIR)/build/pocl-cache
export GPUBRIDGE_CACHE_DIR ?= $(CURDIR)/build/kernel-cache

.PHONY: run test build deps clean

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake --preset $(PRESET)
	cmake --build --preset $(PRESET) -j $(JOBS)

run: build
	$(BUILD_DIR)/src/gpubridge devices
	$(BUILD_DIR)/src/gpubridge verify
	$(BUILD_DIR)/src/gpubridge run --demo --duration 10

test: build
	GPUBRIDGE_REQUIRE_BACKENDS=opencl ctest --preset $(PRESET) -j $(JOBS)
ifeq ($(CI),true)
	# Also as built on a machine without the CUDA toolkit (CUDA code absent, not just skipped).
	cmake --preset ci-nocuda
	cmake --build --preset ci-nocuda -j $(JOBS)
	GPUBRIDGE_REQUIRE_BACKENDS=opencl ctest --preset ci-nocuda -j $(JOBS)
endif

clean:
	rm -rf build
