#!/usr/bin/env bash
# Runs the whole test suite: lint, core, app (AppTest) and browser tests.
# Creates .venv and installs on first use. Browser tests need Debian's chromium
# (apt-get install chromium); tests using real weights and data need ../shared
# (or TRANSFER_STUDIO_SHARED=DIR). Screenshots go to a temporary folder;
# TRANSFER_STUDIO_SCREENSHOTS=1 ./test.sh tests/e2e refreshes docs/screenshots/.
# Tests run in TEST_WORKERS processes (default 2, one per core; whole files per process; 0 runs them in this one).
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure_venv.sh requirements-dev.txt
.venv/bin/ruff check core ui pages tests bench scripts app.py
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile --durations=30 "$@"
