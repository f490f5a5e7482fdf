#!/usr/bin/env bash
# Installs missing system programs, builds bin/bota and starts the server.
# Usage: scripts/run.sh [bota serve flags]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/deps.sh
go build -o bin/bota ./cmd/bota
exec bin/bota serve "$@"
