#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs zeroplan with the given arguments; with
# none it answers the built-in default question.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/zeroplan "$@"
