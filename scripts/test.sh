#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Python 3.11, then runs
# the whole suite. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --upgrade pip
# llama-cpp-python compiles from source where no wheel is published (about 10 minutes on 2 cores;
# pip caches the built wheel).
python3 -m pip install --quiet -e ".[test]"

python3 -m pytest "$@"
