"""core never imports streamlit: it must stay usable from the CLI and tests."""

import pkgutil
import subprocess
import sys

import core


def test_core_modules_do_not_import_streamlit():
    names = [m.name for m in pkgutil.walk_packages(core.__path__, prefix="core.") if not m.name.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
