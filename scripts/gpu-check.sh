#!/usr/bin/env bash
# GPU check: build with CUDA, run the tests (the gpu-labelled ones must not skip), verify every
# kernel on CUDA, run the benchmarks; write everything to one directory, most wanted first, inside
# a time budget (GPUBRIDGE_CHECK_BUDGET_S, default 560 s).
#
#   scripts/gpu-check.sh            build here, then run here (a machine with a GPU and the toolchain)
#   scripts/gpu-check.sh package    build here and pack binaries + non-CUDA, non-glibc libraries into
#                                   .gpu-carry/payload.tar.xz, the only file there (carry .gpu-carry to
#                                   a GPU machine without the build dependencies)
#   scripts/gpu-check.sh run        unpack the payload into .gpu-run/ and run from there (on the GPU
#                                   machine; here too, to try the script: .gpu-carry stays small)
#   scripts/gpu-check.sh probe      as run, but only a few minutes of diagnostics (do_probe)
#
# Results go to bench/results/local-<date>/, or, when $OUT is set (the device tool brings back at
# most 8 files from it), into $OUT/results.tar.gz, packed again after every stage so that a run
# cut short still brings back what it wrote. The CUDA runtime and NVRTC are
# taken from the GPU machine's own CUDA installation (they must match its driver).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
root=$PWD
carry=$root/.gpu-carry   # what travels: payload.tar.xz only
unpacked=$root/.gpu-run  # the payload unpacked, where `run` runs from
build=$root/build/gpu

do_build() {
  bash scripts/install-deps.sh || return 1
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUBRIDGE_WERROR=ON || return 1
  cmake --build "$build" -j "$(nproc)" || return 1
}

do_package() {
  local stage=$unpacked
  rm -rf "$carry" "$stage" && mkdir -p "$carry" "$stage/bin" "$stage/lib"
  cp "$build/src/gpubridge" "$stage/bin/"
  find "$build/tests" -type f -name '*_test' -perm -u+x -exec cp {} "$stage/bin/" \;
  # The gpu-labelled binaries, the coexistence test first (run first on the GPU machine).
  ctest --test-dir "$build" --show-only=json-v1 -L gpu 2>/dev/null | /usr/bin/python3 -c '
import json, os, sys
names = sorted({os.path.basename(t["command"][0]) for t in json.load(sys.stdin)["tests"]})
names.sort(key=lambda n: n != "cuda_ring_coexistence_test")
print("\n".join(names))' > "$stage/bin/gpu-tests.txt" || return 1
  for b in bench_compute bench_runtime bench_grains bench_samples bench_ring bench_pipeline; do [ -x "$build/bench/$b" ] && cp "$build/bench/$b" "$stage/bin/"; done
  # The real data the samples' benchmarks read (the GPU machine has no ../shared).
  mkdir -p "$stage/data" && cp -r ../shared/data/images ../shared/data/graphs ../shared/data/matrices "$stage/data/"
  cp -r tests/samples/data "$stage/references"
  # Libraries the binaries need that the GPU machine may lack: everything except glibc and CUDA.
  ldd "$stage"/bin/* 2>/dev/null | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcuda*|libnvrtc*|libgcc_s*|libstdc++*) ;;
      *) cp -L "$lib" "$stage/lib/" ;;
    esac
  done
  # gperftools' CPU profiler for 'probe', when installed here (not a dependency of the project).
  local prof=/usr/lib/x86_64-linux-gnu/libprofiler.so.0
  [ -e "$prof" ] && cp -L "$prof" /usr/lib/x86_64-linux-gnu/libunwind.so.8 "$stage/lib/"
  # One xz archive: the device tool carries at most 64 MiB, the binaries alone are larger.
  tar -C "$stage" -cf - bin lib data references | xz -T2 -6 > "$carry/payload.tar.xz" || return 1
  md5sum < "$carry/payload.tar.xz" > "$stage/payload.md5"  # unpacked already: `run` here uses it as it is
  du -sh "$carry"
}

# Unpacks the archive made by do_package into .gpu-run (unless that holds this very archive already).
unpack_carry() {
  [ -f "$carry/payload.tar.xz" ] || { echo "gpu-check: no $carry/payload.tar.xz (run 'package' first)" >&2; return 1; }
  local sum
  sum=$(md5sum < "$carry/payload.tar.xz")
  [ -d "$unpacked/bin" ] && [ "$(cat "$unpacked/payload.md5" 2>/dev/null)" = "$sum" ] && return 0
  rm -rf "$unpacked" && mkdir -p "$unpacked"
  xz -dc "$carry/payload.tar.xz" | tar -C "$unpacked" -xf - || return 1
  echo "$sum" > "$unpacked/payload.md5"
}

find_cuda_libs() {
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
           $(ls -d /usr/local/lib/python3*/dist-packages/nvidia/cu*/lib /opt/*/.venv/lib/python3*/site-packages/nvidia/cu*/lib 2>/dev/null); do
    [ -e "$d/libnvrtc.so.13" ] && printf '%s:' "$d"
  done
}

# Runs "$@" with a timeout of min(LIMIT, time left in the budget), appending its output to FILE
# (and to stdout); a step with under 15 s left is skipped, named in skipped.txt, and returns 125.
step() {
  local limit=$1 file=$2; shift 2
  local left=$((deadline - SECONDS))
  if ((left < 15)); then echo "skipped (out of time): $*" | tee -a "$out/skipped.txt"; return 125; fi
  ((limit > left)) && limit=$left
  timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$file"
  local rc=${PIPESTATUS[0]}
  ((rc == 124 || rc == 137)) && echo "gpu-check: timed out after ${limit}s: $*" | tee -a "$file"
  return "$rc"
}

# Records a step's exit status RC for WHAT in FILE: 0 passes, 125 (skipped for time) is "NOT RUN",
# anything else is "FAILED" and fails the check.
record() {
  local rc=$1 what=$2 file=$3
  case $rc in
    0) ;;
    125) echo "NOT RUN (out of time): $what" >> "$file" ;;
    *) failed=1; echo "FAILED: $what (exit $rc)" | tee -a "$file" ;;
  esac
}

# One test binary, CUDA required (the gpu tests fail instead of skipping). The GPU machine has no
# promtool (Debian's prometheus package): those checks run in CI instead.
run_test() {
  echo "== $(basename "$1")" >> "$out/tests.log"
  GPUBRIDGE_REQUIRE_BACKENDS=cuda step "$2" "$out/tests.log" "$1" --gtest_brief=1 --gtest_filter='-*Promtool*' > /dev/null
  record $? "$(basename "$1")" "$out/tests.log"
}

# One gpu-labelled test binary, every case named in the log as it starts, CUDA required. A run
# that hangs (a persistent kernel that never answers) costs LIMIT
# seconds: the case it hung in is named, and the cases not yet started run again without it, at
# most three times.
run_gpu_test() {
  local path=$1 limit=$2 name log skip='*Promtool*' attempt rc hung
  name=$(basename "$path") log=$(mktemp)
  for attempt in 1 2 3 4; do
    if ((attempt == 1)); then echo "== $name" >> "$out/tests.log"; else echo "== $name (again, without: $skip)" >> "$out/tests.log"; fi
    : > "$log"
    GPUBRIDGE_REQUIRE_BACKENDS=cuda step "$limit" "$log" "$path" --gtest_filter="-$skip" > /dev/null
    rc=$?
    cat "$log" >> "$out/tests.log"
    record "$rc" "$name" "$out/tests.log"
    ((rc == 124 || rc == 137)) || break
    # The case that started and never finished, then every case that finished or failed: not run again.
    hung=$(awk '/^\[ RUN      \] /{c=$4} /^\[       OK \] |^\[  FAILED  \] |^\[  SKIPPED \] /{c=""} END{print c}' "$log")
    [ -n "$hung" ] || break
    echo "HUNG: $name $hung" | tee -a "$out/tests.log"
    skip="$skip:$(awk '/^\[ RUN      \] /{printf "%s:", $4}' "$log")"
    skip=${skip%:}
  done
  rm -f "$log"
}

# One benchmark binary run over the cases matching FILTER (and their references, which the filter
# names); its ratio table also goes to ratios-<binary>-<n>.json.
bench_runs=0
bench_run() {
  local b=$1 filter=$2 limit=$3; shift 3
  [ -x "$bin/$b" ] || return 0
  bench_runs=$((bench_runs + 1))
  echo "== $b ($filter)" | tee -a "$out/bench.txt"
  step "$limit" "$out/bench.txt" "$bin/$b" --benchmark_filter="$filter" --ratio_out="$out/ratios-$b-$bench_runs.json" "$@" \
    > /dev/null
  record $? "$b" "$out/bench.txt"
  pack
}

# With $OUT set: everything written so far, as $OUT/results.tar.gz (replaced whole, never half written).
pack() {
  [ -n "${OUT:-}" ] || return 0
  tar -C "$out" -czf "$OUT/.results.tar.gz" . && mv "$OUT/.results.tar.gz" "$OUT/results.tar.gz"
}

# Everything, most wanted first, inside GPUBRIDGE_CHECK_BUDGET_S seconds (default 560: one device
# call may run 600 s): results are written as they come, so a run cut short still reports them.
# Sets up a run: bin, out, deadline, the environment, environment.txt.
prepare_run() {
  bin=$1 out=$root/bench/results/local-$(date +%Y%m%d-%H%M%S)
  [ -n "${OUT:-}" ] && { out=$(mktemp -d); trap pack EXIT; }
  deadline=$((SECONDS + ${GPUBRIDGE_CHECK_BUDGET_S:-560}))
  failed=0
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$(find_cuda_libs)${unpacked}/lib:${LD_LIBRARY_PATH:-}"
  export GPUBRIDGE_CACHE_DIR=${GPUBRIDGE_CACHE_DIR:-/tmp/gpubridge-cache}
  export POCL_CACHE_DIR=${POCL_CACHE_DIR:-/tmp/pocl-cache}
  export GPUBRIDGE_CLI=$bin/gpubridge
  [ -d "$unpacked/data" ] && export GPUBRIDGE_DATA_DIR=$unpacked/data
  [ -d "$unpacked/references" ] && export GPUBRIDGE_SAMPLES_REFERENCE_DIR=$unpacked/references
  {
    echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"; echo "cores: $(nproc)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "CUDA_MODULE_LOADING=${CUDA_MODULE_LOADING:-(unset: lazy)}"
    echo "cuBLAS (loaded with dlopen):"; ldconfig -p 2>/dev/null | grep -E 'libcublas(Lt)?\.so' || echo "  not in the loader cache"
    local d; for d in ${LD_LIBRARY_PATH//:/ }; do ls "$d"/libcublas.so* 2>/dev/null; done
    "$bin/gpubridge" devices
  } > "$out/environment.txt" 2>&1
  cat "$out/environment.txt"
  pack
}

do_run() {
  prepare_run "$1"

  # 1. The gpu-labelled test binaries (gpu-tests.txt, written by 'package'; the ring coexistence test first).
  : > "$out/tests.log"
  local gpu_tests=() t
  [ -f "$bin/gpu-tests.txt" ] && mapfile -t gpu_tests < "$bin/gpu-tests.txt"
  # At most GPUBRIDGE_GPU_TESTS_S (default 240 s) in all, so that hung tests leave the benchmarks time.
  local budget_deadline=$deadline
  deadline=$((SECONDS + ${GPUBRIDGE_GPU_TESTS_S:-240}))
  ((deadline > budget_deadline)) && deadline=$budget_deadline
  for t in "${gpu_tests[@]}"; do [ -x "$bin/$t" ] && run_gpu_test "$bin/$t" 90; done
  deadline=$budget_deadline
  pack

  # 2. Every kernel on CUDA against the CPU.
  echo "== gpubridge verify --backend cuda"
  step 90 "$out/verify-cuda.txt" "$bin/gpubridge" verify --backend cuda > /dev/null
  record $? "gpubridge verify --backend cuda" "$out/verify-cuda.txt"
  tail -n 3 "$out/verify-cuda.txt"
  pack
  step 90 /dev/null bash -c '"$0" verify --backend cuda --json > "$1" 2>/dev/null' "$bin/gpubridge" "$out/verify-cuda.json" \
    > /dev/null
  record $? "gpubridge verify --backend cuda --json" "$out/verify-cuda.txt"

  # 3. Benchmarks, each with its reference in the same run.
  : > "$out/bench.txt"
  # One process: each CUDA rig releases the others before it starts (one persistent kernel at a
  # time), and the round trip's reference (raw mailbox) must run in the same run for its ratio.
  bench_run bench_ring cuda 150
  # Batch grains: one process per batch size, so that neither figure depends on what the other
  # case left behind (how a burst of 8192 callers once slowed a later B = 256 case:
  # bench/results/2026-11-27-xeon2-frame-region).
  bench_run bench_grains 'grain_batch/cuda/.*/256' 50
  bench_run bench_grains 'grain_batch/cuda/.*/4096' 50
  bench_run bench_pipeline 'pipeline/cuda/' 60
  bench_run bench_samples '.' 120
  bench_run bench_runtime '.' 90
  bench_run bench_compute "${GPUBRIDGE_BENCH_FILTER:-cuda}" 120 --benchmark_out="$out/bench-compute.json" \
    --benchmark_out_format=json ${GPUBRIDGE_BENCH_ARGS:-}
  bench_run bench_grains 'grain_batch/(cpu|opencl)/.*/256' 35
  bench_run bench_grains 'grain_batch/(cpu|opencl)/.*/4096' 35
  # How grain calls scale with workers (bench_runtime above ran with one per core).
  local w
  for w in 1 4 8; do echo "-- workers=$w" >> "$out/bench.txt"; bench_run bench_runtime 'pipelined/(runtime|stateless)' 30 --workers=$w; done
  # ... and batch grains (B = 256, CPU and CUDA) with 2 to 16 workers: where the many-core collapse starts.
  for w in 2 4 8 16; do
    echo "-- workers=$w" >> "$out/bench.txt"
    bench_run bench_grains 'grain_batch/(cpu|cuda)/(grains|raw)/256' 30 --workers=$w
  done
  # ... and which thread saturates there (CPU per thread role: gb-worker, gb-b:<kernel>, gb-cuda-*).
  local f
  for f in 'grain_batch/cuda/grains/256' 'grain_batch/cuda/grains/4096' 'grain_batch/cpu/grains/256'; do
    echo "-- threads, workers=16, $f" >> "$out/threads.txt"
    step 25 "$out/threads.txt" "$root/scripts/thread-cpu.sh" --at 3 --for 4 -- "$bin/bench_grains" --workers=16 \
      --benchmark_filter="$f" --benchmark_min_time=10 > /dev/null || true
  done

  # 4. The demo, then the other test binaries (CPU-side code, also run in CI; those reading the
  #    source tree's data or loading plugins or stand-in libraries from the build tree are left to CI).
  echo "== gpubridge run --demo (batched kernels on the best device)"
  step 60 "$out/demo.txt" "$bin/gpubridge" run --demo --duration 5 > /dev/null
  record $? "gpubridge run --demo" "$out/demo.txt"
  tail -n 12 "$out/demo.txt"
  for t in "$bin"/*_test; do
    case " ${gpu_tests[*]} samples_io_test samples_algorithms_test ring_library_test nvml_test " in *" $(basename "$t") "*) continue ;; esac
    run_test "$t" 120
  done
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^FAILED|^HUNG" "$out/tests.log" || true
  echo "gpu-check: results in ${OUT:+$OUT/results.tar.gz, from }$out (failed=$failed, $((SECONDS)) s)"
  return $failed
}

# A short look at where the time of the two unmet throughput paths goes (a few minutes of device
# time, before changing them): the ring round trip with its host-side parts and the kernel's own
# phase timing (the *_timed cases), the batch grains and
# the batcher alone at B = 4096 with their time breakdown, then a CPU profile of the batch grains
# (gperftools' libprofiler, when 'package' found it here; read it here with
# `google-pprof --text .gpu-run/bin/bench_grains grains-cuda-4096.prof`) and CPU per thread role.
do_probe() {
  prepare_run "$1"
  : > "$out/bench.txt"
  bench_run bench_ring 'ring_rtt/cuda|ring_throughput/cuda/ring_timed' 90
  bench_run bench_grains 'grain_batch/cuda/(grains|raw)/4096' 40
  bench_run bench_compute 'batch/cuda/(batcher|raw)/4096' 40
  if [ -f "$unpacked/lib/libprofiler.so.0" ]; then
    echo "== profile: bench_grains grain_batch/cuda/grains/4096" | tee -a "$out/bench.txt"
    step 40 "$out/bench.txt" env LD_PRELOAD="$unpacked/lib/libprofiler.so.0" CPUPROFILE="$out/grains-cuda-4096.prof" \
      CPUPROFILE_FREQUENCY=2000 "$bin/bench_grains" --benchmark_filter='grain_batch/cuda/grains/4096' \
      --benchmark_min_time=5 > /dev/null || true
    pack
  fi
  step 25 "$out/threads.txt" "$root/scripts/thread-cpu.sh" --at 3 --for 4 -- "$bin/bench_grains" --workers=16 \
    --benchmark_filter='grain_batch/cuda/grains/4096' --benchmark_min_time=10 > /dev/null || true
  pack
  echo "gpu-check: probe results in ${OUT:+$OUT/results.tar.gz, from }$out (failed=$failed, $((SECONDS)) s)"
  return $failed
}

case "$mode" in
  all) do_build && do_package && unpack_carry && do_run "$unpacked/bin" ;;
  package) do_build && do_package ;;
  run) unpack_carry && do_run "$unpacked/bin" ;;
  probe) unpack_carry && do_probe "$unpacked/bin" ;;
  *) echo "usage: $0 [all|package|run|probe]" >&2; exit 2 ;;
esac
