#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs redis-server (the tests start
# and stop their own instances on free loopback ports) when it is missing, then runs every
# test of the workspace with the locked dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "tests/run.sh: installing redis-server (apt-get)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

exec cargo test --workspace --locked "$@"
