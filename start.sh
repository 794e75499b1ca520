#!/usr/bin/env bash
# Starts Transfer Studio on http://localhost:8501 (creates .venv and installs on first use).
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure_venv.sh requirements.txt
exec .venv/bin/python scripts/serve.py --server.address "${HOST:-localhost}" --server.port "${PORT:-8501}" "$@"
