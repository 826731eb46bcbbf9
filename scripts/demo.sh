#!/usr/bin/env bash
# One command on a fresh machine: install lor, then run the main job on the shipped example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lor demo "$@"
