#!/usr/bin/env bash
# Installs every Debian package that building, testing and running GpuBridge needs.
# Idempotent: packages already present are left alone and apt is not touched at all
# when nothing is missing. Debian packages only; nothing is downloaded from elsewhere.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config
  # libraries
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev libopenblas-dev libpng-dev
  # the samples' benchmark references: OpenCV's image processing, igraph
  libopencv-imgproc-dev libigraph-dev
  # OpenCL: ICD loader, headers, and PoCL so OpenCL really runs on CPU-only machines
  ocl-icd-opencl-dev opencl-headers opencl-clhpp-headers pocl-opencl-icd clinfo
  # HTTP (metrics, health, dashboard, OTLP export) and the real servers/tools its tests drive
  libcpp-httplib-dev prometheus chromium curl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
