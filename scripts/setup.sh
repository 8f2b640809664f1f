#!/usr/bin/env bash
# Idempotent setup: installs the Debian packages zeroplan builds with (only
# the missing ones), configures a Release build in build/ and builds it.
# CUDA is optional and never installed here: with nvcc under /usr/local/cuda
# the CUDA parts build too (ZP_WITH_CUDA=AUTO).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make libeigen3-dev libboost-graph-dev libboost-context-dev nlohmann-json3-dev doctest-dev
          libbenchmark-dev libcli11-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DZP_WERROR="$werror" -DZP_WITH_CUDA="${ZP_WITH_CUDA:-AUTO}" >/dev/null
cmake --build build -j"$jobs" >&2
