#!/usr/bin/env bash
# GPU check: build with CUDA, run the tests (the gpu-labelled ones must not skip), verify every
# kernel on CUDA, run the compute benchmarks; write everything to one directory.
#
#   scripts/gpu-check.sh            build here, then run here (a machine with a GPU and the toolchain)
#   scripts/gpu-check.sh package    build here and pack binaries + non-CUDA, non-glibc libraries into
#                                   .gpu-carry/ (for a GPU machine without the build dependencies)
#   scripts/gpu-check.sh run        run from .gpu-carry/ (on the GPU machine)
#
# Results go to $OUT when set, else bench/results/local-<date>/. The CUDA runtime and NVRTC are
# taken from the GPU machine's own CUDA installation (they must match its driver).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
root=$PWD
carry=$root/.gpu-carry
build=$root/build/gpu

do_build() {
  bash scripts/install-deps.sh || return 1
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUBRIDGE_WERROR=ON || return 1
  cmake --build "$build" -j "$(nproc)" || return 1
}

do_package() {
  rm -rf "$carry" && mkdir -p "$carry/bin" "$carry/lib"
  cp "$build/src/gpubridge" "$carry/bin/"
  find "$build/tests" -type f -name '*_test' -perm -u+x -exec cp {} "$carry/bin/" \;
  for b in bench_compute bench_runtime bench_grains bench_samples bench_ring bench_pipeline; do [ -x "$build/bench/$b" ] && cp "$build/bench/$b" "$carry/bin/"; done
  # The real data the samples' benchmarks read (the GPU machine has no ../shared).
  mkdir -p "$carry/data" && cp -r ../shared/data/images ../shared/data/graphs ../shared/data/matrices "$carry/data/"
  cp -r tests/samples/data "$carry/references"
  # Libraries the binaries need that the GPU machine may lack: everything except glibc and CUDA.
  ldd "$carry"/bin/* 2>/dev/null | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcuda*|libnvrtc*|libgcc_s*|libstdc++*) ;;
      *) cp -L "$lib" "$carry/lib/" ;;
    esac
  done
  # One xz archive: the device tool carries at most 64 MiB, the binaries alone are larger.
  tar -C "$carry" -cf - bin lib data references | xz -T2 -6 > "$carry/payload.tar.xz" || return 1
  rm -rf "$carry/bin" "$carry/lib" "$carry/data" "$carry/references"
  du -sh "$carry"
}

# Unpacks the archive made by do_package (once).
unpack_carry() {
  [ -d "$carry/bin" ] && return 0
  [ -f "$carry/payload.tar.xz" ] || { echo "gpu-check: no $carry/payload.tar.xz (run 'package' first)" >&2; return 1; }
  xz -dc "$carry/payload.tar.xz" | tar -C "$carry" -xf -
}

find_cuda_libs() {
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
           $(ls -d /usr/local/lib/python3*/dist-packages/nvidia/cu*/lib /opt/*/.venv/lib/python3*/site-packages/nvidia/cu*/lib 2>/dev/null); do
    [ -e "$d/libnvrtc.so.13" ] && printf '%s:' "$d"
  done
}

do_run() {
  local bin=$1 out=${OUT:-$root/bench/results/local-$(date +%Y%m%d-%H%M%S)}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$(find_cuda_libs)${carry}/lib:${LD_LIBRARY_PATH:-}"
  export GPUBRIDGE_CACHE_DIR=${GPUBRIDGE_CACHE_DIR:-/tmp/gpubridge-cache}
  export POCL_CACHE_DIR=${POCL_CACHE_DIR:-/tmp/pocl-cache}
  export GPUBRIDGE_CLI=$bin/gpubridge
  [ -d "$carry/data" ] && export GPUBRIDGE_DATA_DIR=$carry/data
  [ -d "$carry/references" ] && export GPUBRIDGE_SAMPLES_REFERENCE_DIR=$carry/references
  local failed=0
  {
    echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    "$bin/gpubridge" devices
  } > "$out/environment.txt" 2>&1
  cat "$out/environment.txt"

  # Every test binary; CUDA is required here, so gpu tests fail instead of skipping. The GPU
  # machine has no promtool (Debian's prometheus package): those checks run in CI instead.
  : > "$out/tests.log"
  for t in "$bin"/*_test; do
    # CPU-only code reading the source tree's data or loading plugins from the build tree: run in CI, not here.
    case "$(basename "$t")" in samples_io_test|samples_algorithms_test|ring_library_test) continue ;; esac
    echo "== $(basename "$t")" | tee -a "$out/tests.log"
    GPUBRIDGE_REQUIRE_BACKENDS=cuda timeout 300 "$t" --gtest_brief=1 --gtest_filter='-*Promtool*' >> "$out/tests.log" 2>&1 || { failed=1; echo "FAILED: $t" | tee -a "$out/tests.log"; }
  done
  grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$out/tests.log" || true

  echo "== gpubridge verify --backend cuda"
  "$bin/gpubridge" verify --backend cuda > "$out/verify-cuda.txt" 2>&1 || failed=1
  tail -n 3 "$out/verify-cuda.txt"
  "$bin/gpubridge" verify --backend cuda --json > "$out/verify-cuda.json" 2>/dev/null || failed=1

  echo "== gpubridge run --demo (batched kernels on the best device)"
  timeout 120 "$bin/gpubridge" run --demo --duration 5 > "$out/demo.txt" 2>&1 || failed=1
  tail -n 12 "$out/demo.txt"

  if [ -x "$bin/bench_compute" ]; then
    echo "== bench_compute"
    timeout 240 "$bin/bench_compute" --benchmark_out="$out/bench.json" --benchmark_out_format=json \
      --ratio_out="$out/ratios.json" ${GPUBRIDGE_BENCH_ARGS:-} 2>&1 | tee "$out/bench.txt" || failed=1
  fi
  for b in bench_runtime bench_grains bench_samples bench_ring bench_pipeline; do
    [ -x "$bin/$b" ] || continue
    echo "== $b" | tee -a "$out/bench.txt"
    timeout 120 "$bin/$b" 2>&1 | tee -a "$out/bench.txt" || failed=1
  done
  echo "gpu-check: results in $out (failed=$failed)"
  return $failed
}

case "$mode" in
  all) do_build && do_package && unpack_carry && do_run "$carry/bin" ;;
  package) do_build && do_package ;;
  run) unpack_carry && do_run "$carry/bin" ;;
  *) echo "usage: $0 [all|package|run]" >&2; exit 2 ;;
esac
