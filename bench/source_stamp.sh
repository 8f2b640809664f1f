#!/usr/bin/env bash
# One hash of every file a binary of this project is built from (the code
# folders and the CMake files), computed the same way on any machine, with
# or without git: bench/gpu_check.sh compares it with a prebuilt binary's
# (bench/gpu_prebuild.sh) to know whether the binary is the sources'.
set -euo pipefail
cd "$(dirname "$0")/.."
find CMakeLists.txt models costmodel planner executor kernels cli tests bench \
     -type f \( -name '*.cc' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name 'CMakeLists.txt' -o -name '*.cmake' \) \
     -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
