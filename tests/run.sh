#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs redis-server (the tests start
# and stop their own instances on free loopback ports) and DejaVu Sans when they are missing,
# then runs every test of the workspace with the locked dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  missing+=(redis-server)
fi
# The bench's charts are labelled with DejaVu Sans (src/bench/chart.rs); their tests read them.
if [ -z "${MIMI_BENCH_FONT:-}" ] && [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  missing+=(fonts-dejavu-core)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]} (apt-get)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

exec cargo test --workspace --locked "$@"
