"""Serve the app: ``python scripts/serve.py [streamlit run options]``.

The same as ``streamlit run app.py`` except for one thing: Streamlit treats a ``pages/`` folder as
its legacy multipage layout until a script run calls ``st.navigation``, so the very first request
of a fresh server to a deep link (``/evaluate?run=...``) would run that page file without
``app.py`` (no shared sidebar, no navigation). Telling Streamlit up front that the app does not use
the legacy layout makes every request go through ``app.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parents[1] / "app.py"

if __name__ == "__main__":
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())
