"""Serve the app: ``python scripts/serve.py [streamlit run options]``.

The same as ``streamlit run app.py`` except for one thing: Streamlit treats a ``pages/`` folder as
its legacy multipage layout until a script run calls ``st.navigation``, so the very first request
of a fresh server to a deep link (``/evaluate?run=...``) would run that page file without
``app.py`` (no shared sidebar, no navigation). Telling Streamlit up front that the app does not use
the legacy layout makes every request go through ``app.py``.

It also loads Keras before serving and freezes the objects alive then (``preload``): Streamlit ends
every script run, each fragment rerun of every open tab included, with ``keras.backend.clear_session()``
once Keras is imported, and that runs a full garbage collection.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parents[1] / "app.py"



def preload() -> None:
    """Import Keras, TensorFlow and the app's core once, then move every live object out of the collector's sight.

    With TensorFlow loaded a full ``gc.collect()`` walks some 400,000 objects (about 0.3 s of CPU on a 2-core
    machine), and Streamlit's ``clear_session()`` after each script run would pay it per rerun per tab; frozen
    objects are skipped, so the same collection takes a fraction of a millisecond. The first visitor of the Train
    page no longer waits for the imports either.
    """
    sys.path.insert(0, str(APP.parent))
    import keras  # noqa: F401
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    import core.models.backbones  # noqa: F401
    import core.models.prediction  # noqa: F401
    import core.training.trainer  # noqa: F401

    gc.freeze()


if __name__ == "__main__":
    preload()
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())
