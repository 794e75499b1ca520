"""A real browser against a real server: ``streamlit run app.py`` on a free localhost port, driven by Playwright
with Debian's chromium (headless, --no-sandbox). Fails, never skips, when chromium is missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TRANSFER_STUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
README_SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
SCREENSHOTS_ENV = "TRANSFER_STUDIO_SCREENSHOTS"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Start the app on a free port with a private workspace; yields (url, workspace path)."""
    workspace = tmp_path_factory.mktemp("e2e") / "workspace"
    port = _free_port()
    env = {**os.environ, "TRANSFER_STUDIO_WORKSPACE": str(workspace)}
    log = open(workspace.parent / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "scripts/serve.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180  # a loaded machine (niced tests) can take over a minute to import TensorFlow
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"streamlit did not start; see {workspace.parent / 'server.log'}")
    yield url, workspace
    process.terminate()
    try:
        process.wait(timeout=120)  # a loaded machine can take more than 30 s to end a server and its workers
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def screenshots_dir(environ=None) -> Path:
    """Where the walk-through's screenshots go.

    A temporary folder by default, so running the tests leaves the tree as it was; with
    ``TRANSFER_STUDIO_SCREENSHOTS=1`` the README's own pictures in docs/screenshots/ are refreshed, and any
    other value names a folder to write them to.
    """
    value = (os.environ if environ is None else environ).get(SCREENSHOTS_ENV, "")
    if value in ("", "0"):
        return Path(tempfile.gettempdir()) / "transfer-studio-screenshots"
    return README_SCREENSHOTS if value == "1" else Path(value).expanduser()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as <name>.png in :func:`screenshots_dir`."""
    folder = screenshots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
