#!/usr/bin/env bash
# The main job: set up (if needed) and run the end-to-end quickstart on the embedded data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/ensure_env.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/metricanything quickstart --out "${1:-runs/quickstart}"
