"""The production walkthrough (docs/production.md) runs as written, without Docker: its
files written from the page, its commands run in the page's order, with a JWKS server on
loopback for the identity provider, the fake upstream for OpenAI and a real Redis.

Only addresses change: the page's OpenAI URL, JWKS URL, Redis URL and port become the
loopback ones, and ``sk-your-project-key`` the fake upstream's key."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import API_KEY, FakeUpstream
from jwks_server import JwksServer, new_key
from servers import Process, RedisServer, free_port, wait_until

PAGE = Path(__file__).parent.parent / "docs" / "production.md"
STEP = re.compile(r"<!-- example: walkthrough ?([\w.]*) -->\n```\w+\n(.*?)^```", re.S | re.M)


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


def test_the_walkthrough_as_written(
    tmp_path: Path, jwks: JwksServer, redis_server: RedisServer, upstream: FakeUpstream
) -> None:
    port = free_port()
    swaps = {
        "https://api.openai.com/v1": upstream.url,
        "https://login.example.com/.well-known/jwks.json": jwks.url,
        "redis://127.0.0.1:6379/0": redis_server.url,
        "127.0.0.1:8080": f"127.0.0.1:{port}",
        "port: 8080": f"port: {port}",
        "sk-your-project-key": API_KEY,
    }

    def local(text: str) -> str:
        for page_value, here in swaps.items():
            text = text.replace(page_value, here)
        return text

    steps = STEP.findall(PAGE.read_text())
    assert [name for name, _ in steps if name] == ["broker.yaml", "policies.yaml"]
    key = new_key("idp-1")
    jwks.reset(key)
    now = int(time.time())
    id_token = key.sign({"iss": "https://login.example.com/", "aud": "tokenbroker",
                         "sub": "user-7", "iat": now, "exp": now + 600})  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "REDIS_URL")}
    env.update(ID_TOKEN=id_token, TOKENBROKER_CONFIG="")
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}:{env['PATH']}"  # `tokenbroker` as installed in the venv
    server: Process | None = None
    try:
        for name, body in steps:
            if name:  # a file the page shows
                (tmp_path / name).write_text(local(body))
                continue
            for line in local(body).splitlines():
                line = line.split("  #")[0].strip()
                if not line:
                    continue
                if line.startswith("export "):
                    variable, _, value = line.removeprefix("export ").partition("=")
                    env[variable] = value
                elif line.startswith("tokenbroker serve"):
                    server = Process(shlex.split(line), env, tmp_path)
                    server.wait_for(r"Uvicorn running on")
                    wait_until(lambda: _ok(f"http://127.0.0.1:{port}/readyz"), limit=20)
            commands = [c for c in local(body).splitlines() if c and "tokenbroker serve" not in c
                        and not c.startswith("export ")]  # fmt: skip
            if commands:
                script = "set -euo pipefail\n" + "\n".join(commands)
                result = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path,
                                        capture_output=True, text=True, timeout=60)  # fmt: skip
                assert result.returncode == 0, result.stderr + result.stdout
                if "client_secrets" in script:
                    assert '"value":"ek_' in result.stdout, result.stdout
        assert server is not None, "the page starts the broker"
        sent = [r for r in upstream.received() if r["path"].endswith("/realtime/client_secrets")]
        assert sent and json.loads(sent[-1]["body"])["session"]["model"] == "gpt-realtime-2.1-mini"
        assert sent[-1]["authorization"] == f"Bearer {API_KEY}"  # the real key, never the JWT
    finally:
        if server is not None:
            server.stop()


def _ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
