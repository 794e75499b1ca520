"""Serve the app: ``python scripts/serve.py [streamlit run options]``.

The same as ``streamlit run app.py`` except for one thing: Streamlit treats a ``pages/`` folder as
its legacy multipage layout until a script run calls ``st.navigation``, so the very first request
of a fresh server to a deep link (``/evaluate?run=...``) would run that page file without
``app.py`` (no shared sidebar, no navigation). Telling Streamlit up front that the app does not use
the legacy layout makes every request go through ``app.py``.

It also loads Keras before serving and freezes the objects alive then (``preload``), and ends every
script run without a full garbage collection (``light_cleanup``): Streamlit ends each script run, each
fragment rerun of every open tab included, with ``keras.backend.clear_session()`` once Keras is
imported, and that runs one, as does Streamlit's own ``runner.postScriptGC`` (off in
``.streamlit/config.toml``). Measured with 30 light clients watching a run (``bench/bench_classroom.py
--clients protocol``): the two collections took over half the server's CPU time (51% of a core; 13% without).
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


def light_cleanup() -> None:
    """Streamlit's cleanup after each script run, less its full garbage collection.

    Streamlit clears Keras' global state after every script run with ``keras.backend.clear_session()``, which
    also runs ``gc.collect()``; its own collection after each run is off in ``.streamlit/config.toml``
    (``runner.postScriptGC = false``). The collector still runs by itself as objects pile up.
    """
    from streamlit.runtime.scriptrunner import script_runner

    def clean_problem_modules() -> None:
        for name, clean in (("keras", lambda keras: keras.backend.clear_session(free_memory=False)),
                            ("matplotlib.pyplot", lambda pyplot: pyplot.close("all"))):
            module = sys.modules.get(name)
            if module is not None:
                try:
                    clean(module)
                except Exception:  # as Streamlit's own cleanup: a failed clean must not break the app
                    pass

    script_runner._clean_problem_modules = clean_problem_modules


if __name__ == "__main__":
    preload()
    light_cleanup()
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())
