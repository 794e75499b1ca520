"""The weights download has a timeout of its own: the process-wide socket default is left alone."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time

import pytest

from core.errors import WeightsError
from core.models import weights as weights_module
from core.models.backbones import get_backbone
from core.models.weights import resolve_weights

PAYLOAD = b"fake weights " * 1000


@pytest.fixture
def server():
    """A local HTTP server: ``serve(handler_body)``; returns its base URL. Records the socket default it saw."""
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        delay = 0.0

        def do_GET(self):
            seen["default_timeout"] = socket.getdefaulttimeout()
            time.sleep(Handler.delay)
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", Handler, seen
    httpd.shutdown()
    httpd.server_close()


def test_a_download_leaves_the_process_socket_timeout_alone(server, tmp_path, monkeypatch):
    url, _, seen = server
    monkeypatch.setattr(weights_module, "keras_cache_dir", lambda: tmp_path)
    monkeypatch.setitem(weights_module._SOURCES, "resnet50", (url, hashlib.md5(PAYLOAD).hexdigest()))
    resolved = resolve_weights(get_backbone("resnet50"), 224)
    assert seen["default_timeout"] is None  # other threads' sockets were never given the download's timeout
    target = tmp_path / get_backbone("resnet50").weights_file(224)
    assert target.read_bytes() == PAYLOAD and "downloaded" in resolved.description
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_stalled_download_times_out_into_a_weights_error(server, tmp_path, monkeypatch):
    url, handler, _ = server
    handler.delay = 3.0
    monkeypatch.setattr(weights_module, "DOWNLOAD_TIMEOUT_S", 0.5)
    monkeypatch.setattr(weights_module, "keras_cache_dir", lambda: tmp_path)
    monkeypatch.setitem(weights_module._SOURCES, "resnet50", (url, None))
    started = time.monotonic()
    with pytest.raises(WeightsError, match="timed out"):
        resolve_weights(get_backbone("resnet50"), 224)
    assert time.monotonic() - started < 3.0
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_a_download_with_the_wrong_hash_is_not_kept(server, tmp_path, monkeypatch):
    url, _, _ = server
    monkeypatch.setattr(weights_module, "keras_cache_dir", lambda: tmp_path)
    monkeypatch.setitem(weights_module._SOURCES, "resnet50", (url, "0" * 32))
    with pytest.raises(WeightsError, match="hash"):
        resolve_weights(get_backbone("resnet50"), 224)
    assert list(tmp_path.iterdir()) == []
