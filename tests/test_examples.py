"""Every runnable example of the README and the docs runs here, as written, against
`tokenbroker dev` on its packaged dev policy: a changed dev policy, endpoint or reply
breaks the build, not the reader.

Each ``js``, ``python`` and ``sh`` block is preceded by a marker saying how it runs:
``<!-- example: browser -->`` (a module in a page of its own origin, in Chromium, the
official JS SDKs by their package names through an import map), ``<!-- example: python
-->`` (a fresh interpreter), ``<!-- example: shell -->`` (bash, ``set -euo pipefail``),
``<!-- example: walkthrough -->`` (the production walkthrough, run in order by
tests/test_walkthrough.py), or ``<!-- not run: why -->``. A block without a marker
fails the first test, so a new example cannot slip in untested. The examples' broker
(``http://127.0.0.1:8080`` or ``https://broker.example.com``) becomes the dev broker's
address; ``userJwt`` / ``user_jwt`` / ``$TOKEN`` is a dev token; ``offer_sdp`` is a real
WebRTC offer (aiortc).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from browser import static_origin
from servers import TokenbrokerServer, free_port

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (example: \w+|not run: [^>]+) -->\n)?```(js|python|sh)\n(.*?)^```",
                   re.S | re.M)  # fmt: skip
BROKERS = ("http://127.0.0.1:8080", "https://broker.example.com")
MODULES = ROOT / "tests" / "js" / "node_modules"


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    kind: str  # browser | python | shell | not run: …
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            marker = match.group(1) or ""
            kind = marker.removeprefix("example: ")
            line = text.count("\n", 0, match.start(2)) + 1
            found.append(Example(page.relative_to(ROOT).as_posix(), line, kind,
                                 match.group(2), match.group(3)))  # fmt: skip
    return found


ALL = examples()


def runnable(kind: str) -> list[Example]:
    return [e for e in ALL if e.kind == kind]


def test_every_example_says_how_it_runs() -> None:
    unmarked = [e.id for e in ALL if not e.kind]
    assert not unmarked, f"mark these with <!-- example: … --> or <!-- not run: … -->: {unmarked}"
    assert {e.kind for e in ALL if not e.kind.startswith("not run")} <= {
        "browser", "python", "shell", "walkthrough"}  # fmt: skip
    assert len(runnable("browser")) >= 6 and runnable("python") and runnable("shell")


@pytest.fixture(scope="module")
def dev_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TokenbrokerServer, dict[str, str]]]:
    """`tokenbroker dev` as the README starts it (the packaged dev policy)."""
    env = {"HOME": str(tmp_path_factory.mktemp("home")), "XDG_STATE_HOME": ""}
    server = TokenbrokerServer(["dev", "--port", str(free_port())], env)
    yield server, env
    server.stop()


@pytest.fixture
def dev(
    dev_server: tuple[TokenbrokerServer, dict[str, str]], request: pytest.FixtureRequest
) -> tuple[TokenbrokerServer, str]:
    """The dev broker and a token from `tokenbroker token` (the same dev key), for a user
    of the example's own: each reader starts with the dev policy's whole allowance."""
    server, env = dev_server
    sub = re.sub(r"[^A-Za-z0-9]+", "-", request.node.callspec.id)
    token = subprocess.run(
        [sys.executable, "-m", "tokenbroker", "token", "--sub", sub],
        env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    return server, token


def localise(code: str, url: str) -> str:
    for broker in BROKERS:
        code = code.replace(broker, url)
    return code


def webrtc_offer() -> str:
    """A browser-like offer (audio and the events channel), made by aiortc."""
    from aiortc import RTCPeerConnection

    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio")
        pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


@pytest.mark.parametrize("example", runnable("python"), ids=lambda e: e.id)
def test_python_example(example: Example, dev: tuple[TokenbrokerServer, str]) -> None:
    server, token = dev
    prelude = "import os\nuser_jwt = os.environ['TOKEN']\noffer_sdp = os.environ['OFFER_SDP']\n"
    env = {**os.environ, "TOKEN": token, "OFFER_SDP": webrtc_offer()}
    result = subprocess.run([sys.executable, "-c", prelude + localise(example.code, server.url)],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("example", runnable("shell"), ids=lambda e: e.id)
def test_shell_example(example: Example, dev: tuple[TokenbrokerServer, str]) -> None:
    server, token = dev
    assert shutil.which("bash") and shutil.which("curl")
    script = "set -euo pipefail\n" + localise(example.code, server.url)
    result = subprocess.run(["bash", "-c", script], env={**os.environ, "TOKEN": token},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>example</title>
<script type="importmap">{"imports": {"openai": "./openai/index.mjs",
  "@openai/agents-realtime": "./agents/openai-realtime-agents.mjs"}}</script>
</head><body>
<script>
  window.addEventListener("error", (e) => { window.done = {ok: false, error: String(e.message)}; });
</script>
<script type="module" src="./example.mjs"></script>
</body></html>
"""


def as_module(code: str, token: str) -> str:
    """The example as a module: its imports first, then its body in a try that reports."""
    imports, body = [], []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("import "):
            statement = [lines[i]]
            while not statement[-1].rstrip().endswith(";") and "from" not in statement[-1]:
                i += 1
                statement.append(lines[i])
            imports += statement
        else:
            body.append(lines[i])
        i += 1
    return "\n".join([
        *imports,
        f"const userJwt = {json.dumps(token)};",
        "try {", *body,
        "  window.done = {ok: true};",
        "} catch (error) {",
        "  window.done = {ok: false, error: String(error), code: error.code};",
        "}",
    ])  # fmt: skip


@pytest.fixture(scope="module")
def app_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "openai").symlink_to(MODULES / "openai")
        (root / "agents").symlink_to(MODULES / "@openai" / "agents-realtime" / "dist" / "bundle")
        (root / "index.html").write_text(PAGE)
        yield root


@pytest.mark.parametrize("example", runnable("browser"), ids=lambda e: e.id)
def test_browser_example(
    example: Example, dev: tuple[TokenbrokerServer, str], app_dir: Path, chrome: Browser
) -> None:
    """In a page of its own origin (a frontend's dev server), with a synthetic microphone;
    live calls and sessions reach the dev mode's WebRTC peer. Every answer the broker gave
    the page must be a success: an example that ignores its reply's status (a bare
    ``fetch``) cannot pass on a refusal."""
    server, token = dev
    (app_dir / "example.mjs").write_text(as_module(localise(example.code, server.url), token))
    with static_origin(app_dir) as origin:
        page = chrome.new_page()
        refused: list[str] = []
        page.on("response", lambda r: refused.append(f"{r.status} {r.request.method} {r.url}")
                if r.url.startswith(server.url) and r.status >= 400 else None)  # fmt: skip
        try:
            page.goto(f"{origin}/index.html")
            page.wait_for_function("window.done !== undefined", timeout=30_000)
            done = page.evaluate("window.done")
        finally:
            page.close()
    assert done["ok"], done
    assert refused == []
