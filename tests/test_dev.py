"""`tokenbroker dev`: the printed curl works as pasted, and the demo page is served."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import TokenbrokerServer, free_port

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def dev(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TokenbrokerServer, dict[str, str]]]:
    env = {"HOME": str(tmp_path_factory.mktemp("home")), "XDG_STATE_HOME": ""}
    policies = str(ROOT / "tests" / "policies" / "example.yaml")
    server = TokenbrokerServer(["dev", "--port", str(free_port()), "--policies", policies], env)
    yield server, env
    server.stop()


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenbrokerServer]:
    """`tokenbroker dev` as `./scripts/dev` runs it: the packaged dev policy."""
    env = {"HOME": str(tmp_path_factory.mktemp("home")), "XDG_STATE_HOME": ""}
    server = TokenbrokerServer(["dev", "--port", str(free_port())], env)
    yield server
    server.stop()


def paste_printed_curl(server: TokenbrokerServer) -> str:
    """What the curl command dev prints answers, run by a shell as pasted."""
    match = re.search(r"^curl .*?-d '[^']*'$", server.output, re.MULTILINE | re.DOTALL)
    assert match, server.output
    assert shutil.which("bash") and shutil.which("curl")
    result = subprocess.run(
        ["bash", "-c", match.group(0)], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout


def test_printed_curl_returns_a_client_secret(
    dev: tuple[TokenbrokerServer, dict[str, str]],
) -> None:
    """The curl command dev prints, run by a shell as pasted, mints a secret."""
    server, _ = dev
    assert '"client_secret":{"value":"ek_' in paste_printed_curl(server)
    # the fake upstream's server (a thread of the same process) does not announce itself
    assert server.output.count("Started server process") == 1, server.output


def test_printed_curl_works_on_the_packaged_dev_policy(packaged: TokenbrokerServer) -> None:
    """With no --policies (./scripts/dev), the printed body asks for what the packaged
    policy allows (one of its voices), so the pasted curl mints a secret too."""
    out = paste_printed_curl(packaged)
    assert '"client_secret":{"value":"ek_' in out, out
    assert "Dev policy 'dev' (" in packaged.output


def test_dev_mints_are_quick(packaged: TokenbrokerServer) -> None:
    """Mints on one kept-alive connection, as a page makes them: none waits on the
    in-process fake upstream's delayed ACK (~44 ms each before its replies went out as
    one segment). A generous bound; the figure is in docs/performance.md."""
    token = re.search(r"Bearer ([\w.-]+)'", packaged.output)
    assert token
    times = []
    with httpx.Client(headers={"Authorization": f"Bearer {token.group(1)}"}) as client:
        for _ in range(15):
            started = time.perf_counter()
            reply = client.post(f"{packaged.url}/v1/realtime/client_secrets",
                                json={"session": {"type": "realtime"}})  # fmt: skip
            times.append(time.perf_counter() - started)
            assert reply.status_code == 200, reply.text
    assert statistics.median(times[1:]) < 0.025, times


def test_the_banner_says_what_the_dev_policy_allows(packaged: TokenbrokerServer) -> None:
    banner = packaged.output
    assert "models gpt-realtime-2.1, gpt-realtime-2.1-mini" in banner
    assert "voices marin, cedar, alloy" in banner
    assert "GPT-Live models gpt-live-1.1, gpt-live-1" in banner


def test_demo_page(dev: tuple[TokenbrokerServer, dict[str, str]]) -> None:
    """/ serves the demo page with a ready token and the mint button."""
    server, _ = dev
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert 'id="mint"' in page.text
    token = re.search(r'<input id="token" value="([^"]+)">', page.text)
    assert token
    reply = httpx.post(
        server.url + "/v1/realtime/sessions",
        json={},
        headers={"Authorization": f"Bearer {token.group(1)}"},
    )
    assert reply.status_code == 200


def test_token_command_signs_with_the_dev_key(
    dev: tuple[TokenbrokerServer, dict[str, str]],
) -> None:
    """`tokenbroker token --sub` makes a token the running dev server accepts, claims included."""
    server, env = dev
    result = subprocess.run(
        [sys.executable, "-m", "tokenbroker", "token", "--sub", "user-42", "--claim", "plan=x"],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, **env},
    )
    reply = httpx.post(
        server.url + "/v1/realtime/sessions",
        json={"model": "gpt-4o-realtime-preview"},
        headers={"Authorization": f"Bearer {result.stdout.strip()}"},
    )
    assert reply.status_code == 200, reply.text  # user-42 is premium in the example file
    assert reply.json()["model"] == "gpt-4o-realtime-preview"


def test_help_is_written_for_people() -> None:
    """`tokenbroker --help` says what the product is, not how the module is built."""
    done = subprocess.run([sys.executable, "-m", "tokenbroker", "--help"], capture_output=True,
                          text=True, timeout=30, check=True)  # fmt: skip
    assert "browser apps" in done.stdout and "tokenbroker dev" in done.stdout
    assert "``" not in done.stdout and "parses flags" not in done.stdout
    dev = subprocess.run([sys.executable, "-m", "tokenbroker", "dev", "--help"],
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    for flag in ("--host", "--port", "--cors-origin", "--policies"):
        assert flag in dev.stdout
