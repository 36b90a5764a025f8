"""The official OpenAI JS SDK (``openai`` from npm, pinned in ``tests/js``), loaded by a page
on its own origin in a real Chromium, with the broker as its base URL and the user's JWT as
its key: the README's browser example, through a real CORS preflight.

The SDK adds its own headers to every request (platform and retry headers, ``OpenAI-Beta``
on the beta endpoints); a preflight that did not allow them would fail every call."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from browser import static_origin
from conftest import StartBroker, make_token

SDK = Path(__file__).parent / "js" / "node_modules" / "openai"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sdk app</title></head><body>
<p id="ready">loading</p>
<script type="module">
  import OpenAI from "./openai/index.mjs";
  window.OpenAI = OpenAI;
  document.getElementById("ready").textContent = "ready";
</script>
</body></html>
"""

# Each call returns what the page saw: the result, or the SDK's error class with the
# broker's code and param.
CALL = """async ({broker, token, call}) => {
  const client = new OpenAI({baseURL: broker + "/v1", apiKey: token, maxRetries: 0,
                             dangerouslyAllowBrowser: true});
  try {
    if (call === "ga") {
      const secret = await client.realtime.clientSecrets.create(
        {session: {type: "realtime", audio: {output: {voice: "alloy"}}}});
      return {ok: true, value: secret.value, type: secret.session.type};
    }
    if (call === "beta") {
      const session = await client.beta.realtime.sessions.create({voice: "alloy"});
      return {ok: true, value: session.client_secret.value};
    }
    await client.realtime.clientSecrets.create(
      {session: {type: "realtime", audio: {output: {voice: "marin"}}}});
    return {ok: true};
  } catch (error) {
    return {ok: false, name: error.constructor.name, status: error.status, code: error.code,
            param: error.param};
  }
}"""


@pytest.fixture(scope="module")
def sdk_app(start_broker: StartBroker) -> Iterator[dict[str, Any]]:
    """A page that imports the SDK, on an origin the broker allows."""
    assert (SDK / "index.mjs").is_file(), "run `npm ci` in tests/js (scripts/test does)"
    root = Path(tempfile.mkdtemp(prefix="tb-sdk-"))
    (root / "index.html").write_text(PAGE)
    (root / "openai").symlink_to(SDK.resolve(), target_is_directory=True)
    try:
        with static_origin(root) as origin:
            broker = start_broker(upstream={"dialect": "openai"},
                                  cors={"allowed_origins": [origin]})  # fmt: skip
            yield {"broker": broker.url, "origin": origin}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def call(page: Page, app: dict[str, Any], which: str) -> dict[str, Any]:
    page.goto(app["origin"] + "/index.html")
    page.wait_for_function("document.getElementById('ready').textContent === 'ready'")
    args = {"broker": app["broker"], "token": make_token(f"sdk-{which}"), "call": which}
    result: dict[str, Any] = page.evaluate(CALL, args)
    return result


@pytest.mark.parametrize("which", ["ga", "beta"])
def test_the_official_js_sdk_mints_from_a_page(
    page: Page, sdk_app: dict[str, Any], which: str
) -> None:
    """`client.realtime.clientSecrets.create()` and `client.beta.realtime.sessions.create()`
    from another origin: the preflight allows the SDK's headers, the secret comes back."""
    result = call(page, sdk_app, which)
    assert result["ok"], result
    assert result["value"].startswith("ek_")


def test_a_refusal_reaches_the_page_as_the_sdks_error(page: Page, sdk_app: dict[str, Any]) -> None:
    """A voice the policy refuses is the SDK's PermissionDeniedError in the page, with the
    broker's code and the GA request's path as param (the reply's CORS headers let the
    page read it)."""
    result = call(page, sdk_app, "refused")
    assert result == {
        "ok": False, "name": "PermissionDeniedError", "status": 403,
        "code": "voice_not_allowed", "param": "session.audio.output.voice",
    }  # fmt: skip
