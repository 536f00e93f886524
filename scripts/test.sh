#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Python 3.11, then runs
# the whole suite. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

python3 -m pip install --quiet --upgrade pip
# llama-cpp-python compiles from source where no wheel is published (about 10 minutes on 2 cores;
# pip caches the built wheel).
python3 -m pip install --quiet -e ".[test,smart-turn]"
# Silero VAD's ONNX model: the package only, since its declared dependencies would bring torch.
python3 -m pip install --quiet --no-deps "silero-vad>=6"

# axe-core for the accessibility checks, from the npm registry, pinned in package.json.
npm install --silent --no-audit --no-fund

# A throwaway PostgreSQL (installed from Debian when missing) for the storage tests, which run on
# SQLite and on PostgreSQL alike; they skip PostgreSQL only when this variable is unset.
pg_dir=$(mktemp -d /tmp/convergio-pg.XXXXXX)
trap 'bash scripts/test_postgres.sh stop "$pg_dir"' EXIT
CONVERGIO_TEST_POSTGRES_URL=$(bash scripts/test_postgres.sh start "$pg_dir")
export CONVERGIO_TEST_POSTGRES_URL

python3 -m pytest "$@"
