"""Real-browser helpers: Debian's Chromium driven by Playwright (no browser download), and
app pages served from their own origins, as a frontend's dev server would serve them."""

from __future__ import annotations

import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",  # getUserMedia granted without a prompt
    "--use-fake-device-for-media-stream",  # a synthetic microphone
]


def chromium() -> str:
    """The system Chromium (``scripts/bootstrap`` installs Debian's ``chromium``)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is not installed (scripts/bootstrap installs it)"
    return path


APP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>app</title></head><body>
<p id="ready">loading</p>
<script type="module">
  import * as tokenbroker from "./client.js";
  window.tokenbroker = tokenbroker;
  document.getElementById("ready").textContent = "ready";
</script>
</body></html>
"""


@contextmanager
def static_origin(root: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """A directory served on its own origin (modules as JavaScript, symlinks followed)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def guess_type(self, path: str | os.PathLike[str]) -> str:
            if str(path).endswith((".js", ".mjs")):
                return "text/javascript"
            return super().guess_type(path)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer((host, 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def app_origin(client_js: str, host: str = "127.0.0.1") -> Iterator[str]:
    """A static app (its page and a copy of the broker's client.js) on its own origin."""
    root = Path(tempfile.mkdtemp(prefix="tb-app-"))
    (root / "index.html").write_text(APP_PAGE)
    (root / "client.js").write_text(client_js)
    try:
        with static_origin(root, host) as origin:
            yield origin
    finally:
        shutil.rmtree(root, ignore_errors=True)
