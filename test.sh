#!/usr/bin/env bash
# Runs the whole test suite: lint, core, app (AppTest) and browser tests.
# Creates .venv and installs on first use. Browser tests need Debian's chromium
# (apt-get install chromium); tests using real weights and data need ../shared.
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure_venv.sh requirements-dev.txt
.venv/bin/ruff check core ui pages tests bench scripts app.py
exec .venv/bin/python -m pytest "$@"
