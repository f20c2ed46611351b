#!/usr/bin/env bash
# Runs the test suite offline, with every tool's state in a throwaway folder (never in $HOME).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d "${TMPDIR:-/tmp}/seppo-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export HF_HOME="$scratch/hf" XDG_CACHE_HOME="$scratch/cache" MPLCONFIGDIR="$scratch/mpl"
export PREFECT_HOME="$scratch/prefect" PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90
export PREFECT_SERVER_ANALYTICS_ENABLED=false DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=false
export PYTHONHASHSEED=0
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
