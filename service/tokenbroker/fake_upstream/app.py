"""A faithful local stand-in for the upstream's mint endpoints (tests, benchmark, dev):
beta ``POST /v1/realtime/sessions``, GA ``POST /v1/realtime/client_secrets`` and Azure's
``POST /openai/v1/realtime/client_secrets`` (key in ``api-key``).

It validates bodies against the official schema (:mod:`.validate`), answers 401 without
a bearer key (or with the wrong one when ``api_key`` is set), and returns an ``ek_``
secret that expires in 60 s. Knobs, set at start or at run time via ``/_fake/control``:
latency, recording what arrives (on unless started with ``--no-record``), and a queue
of faults (status codes, ``invalid_json``, ``no_secret``, ``hang``, ``reset``: the
connection drops mid-reply).
``/_fake/requests`` lists what it received, so tests can see what the broker sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenbroker.errors import error_body
from tokenbroker.fake_upstream.calls import FakeCalls
from tokenbroker.fake_upstream.live import FakeLive
from tokenbroker.fake_upstream.models import FakeModels
from tokenbroker.fake_upstream.validate import CLIENT_SECRETS, LIVE_CREATE, SESSIONS, Refused, check


@dataclass
class FakeControls:
    api_key: str | None = None
    latency_ms: float = 0.0
    fail_rate: float = 0.0  # chance of a 500 on any request
    faults: deque[str] = field(default_factory=deque)  # consumed one per request
    received: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    count: int = 0
    record: bool = True
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    calls: dict[str, Any] = field(default_factory=dict)  # call id -> FakeCall


def _error(status: int, kind: str, code: str, message: str, param: str | None = None) -> Response:
    return Response(error_body(kind, code, message, param), status, media_type="application/json")


def unauthorized(authorization: str, api_key: str | None) -> Response | None:
    """The 401 for a missing or wrong key (``Authorization: Bearer …``), else None."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return _error(
            401, "invalid_request_error", "missing_api_key", "You didn't provide an API key."
        )
    if api_key is not None and key.strip() != api_key:
        return _error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key.")
    return None


def key_of(headers: Any) -> str:
    """The request's credential as ``Bearer …``: OpenAI's header, or Azure's ``api-key``."""
    key = headers.get("api-key", "")
    return f"Bearer {key}" if key else str(headers.get("authorization", ""))


def _session(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"sess_{secrets.token_hex(8)}",
        "object": "realtime.session",
        "model": config.get("model", "gpt-4o-realtime-preview"),
        "modalities": config.get("modalities", ["audio", "text"]),
        "instructions": config.get("instructions", ""),
        "voice": config.get("voice", "alloy"),
        "input_audio_format": config.get("input_audio_format", "pcm16"),
        "output_audio_format": config.get("output_audio_format", "pcm16"),
        "input_audio_transcription": config.get("input_audio_transcription"),
        "turn_detection": config.get("turn_detection", {"type": "server_vad"}),
        "tools": config.get("tools", []),
        "tool_choice": config.get("tool_choice", "auto"),
        "temperature": config.get("temperature", 0.8),
        "max_response_output_tokens": config.get("max_response_output_tokens", "inf"),
        "client_secret": {
            "value": f"ek_{secrets.token_hex(16)}",
            "expires_at": int(time.time()) + 60,
        },
    }


def _client_secret(request: dict[str, Any]) -> dict[str, Any]:
    """A GA reply: the secret, its expiry, and the session it opens."""
    session = request.get("session") or {"type": "realtime"}
    seconds = (request.get("expires_after") or {}).get("seconds", 600)
    return {
        "value": f"ek_{secrets.token_hex(16)}",
        "expires_at": int(time.time()) + seconds,
        "session": {
            "id": f"sess_{secrets.token_hex(8)}",
            "object": "realtime.session",
            "model": "gpt-realtime-2.1",
            **session,
        },
    }


async def _fault(name: str) -> Response | None:
    if name.isdigit():
        status = int(name)
        headers = {"Retry-After": "7"} if status == 429 else None
        if 300 <= status < 400:  # back to this endpoint: a client that follows gets a 200
            headers = {"Location": "/v1/realtime/sessions"}
        response = _error(status, "server_error", f"fake_{status}", f"Injected {status}.")
        if headers:
            response.headers.update(headers)
        return response
    if name == "invalid_json":
        return Response(b"{not json", 200, media_type="application/json")
    if name == "no_secret":
        return JSONResponse({"id": "sess_x", "object": "realtime.session"})
    if name == "hang":
        await asyncio.sleep(3600)
    if name == "reset":
        return _Reset()
    return None


class _Reset(Response):
    """Starts a reply, then drops the connection mid-body (the client sees a reset)."""

    def __init__(self) -> None:
        super().__init__(b"", 200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionResetError("fake upstream drops the connection")


def create_fake_upstream(controls: FakeControls | None = None) -> Starlette:
    controls = controls or FakeControls()

    async def create_session(request: Request) -> Response:
        return await mint(request, SESSIONS, "authorization", _session)

    async def create_client_secret(request: Request) -> Response:
        return await mint(request, CLIENT_SECRETS, "authorization", _client_secret)

    async def create_azure_client_secret(request: Request) -> Response:
        return await mint(request, CLIENT_SECRETS, "api-key", _client_secret)

    async def mint(
        request: Request,
        schema: tuple[str, str],
        key_header: str,
        reply: Callable[[dict[str, Any]], Any],  # a reply body, or a Response (awaitable)
    ) -> Response:
        controls.count += 1
        async with controls.arrived:
            controls.arrived.notify_all()
        raw = await request.body()
        authorization = request.headers.get(key_header, "")
        if key_header != "authorization":  # Azure: a resource key, or an Entra ID bearer token
            key = authorization
            authorization = f"Bearer {key}" if key else request.headers.get("authorization", "")
        if controls.record:
            controls.received.append(
                {
                    "path": request.url.path,
                    "authorization": request.headers.get("authorization", ""),
                    "api_key": request.headers.get("api-key"),
                    "organization": request.headers.get("openai-organization"),
                    "project": request.headers.get("openai-project"),
                    "body": raw.decode(),
                }
            )
        # a request's fault is the one queued when it arrived: a slow request still in
        # flight must not take a fault queued for the requests after it
        fault = controls.faults.popleft() if controls.faults else None
        if controls.latency_ms:
            await asyncio.sleep(controls.latency_ms / 1000)
        if fault is not None:
            response = await _fault(fault)
            if response is not None:
                return response
        if controls.fail_rate and random.random() < controls.fail_rate:  # noqa: S311  # not crypto
            return _error(500, "server_error", "fake_500", "Injected random failure.")
        refused = unauthorized(authorization, controls.api_key)
        if refused is not None:
            return refused
        try:
            config = check(raw, schema)
        except Refused as exc:
            return _error(400, "invalid_request_error", exc.code, exc.message, exc.param)
        answer = reply(config)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    async def control(request: Request) -> Response:
        body = await request.json()
        if "latency_ms" in body:
            controls.latency_ms = float(body["latency_ms"])
        if "fail_rate" in body:
            controls.fail_rate = float(body["fail_rate"])
        if "faults" in body:
            controls.faults = deque(str(f) for f in body["faults"])
        if "record" in body:
            controls.record = bool(body["record"])
        if "shutdowns" in body:  # {model: Unix seconds}: what GET /v1/models announces
            models.shutdowns = {str(k): int(v) for k, v in body["shutdowns"].items()}
        if body.get("reset"):
            controls.received.clear()
            controls.count = 0
        return JSONResponse({"ok": True})

    async def received(request: Request) -> Response:
        """What arrived; with ``?wait_for=N``, first wait (up to 30 s) until N requests have."""
        wanted = int(request.query_params.get("wait_for", "0"))
        async with controls.arrived:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await controls.arrived.wait_for(lambda: controls.count >= wanted)
        return JSONResponse({"count": controls.count, "requests": list(controls.received),
                             "model_list_reads": models.reads})  # fmt: skip

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    calls = FakeCalls(controls.api_key, _error, unauthorized, key_of)
    controls.calls = calls.calls
    live = FakeLive(controls.api_key, unauthorized, key_of)
    models = FakeModels(controls.api_key, unauthorized, key_of)

    async def create_live(request: Request) -> Response:
        return await mint(request, LIVE_CREATE, "authorization", live.create)

    async def create_azure_live(request: Request) -> Response:
        return await mint(request, LIVE_CREATE, "api-key", live.create)

    return Starlette(
        routes=[
            *calls.routes(),
            Route("/v1/realtime/sessions", create_session, methods=["POST"]),
            Route("/v1/realtime/client_secrets", create_client_secret, methods=["POST"]),
            Route(
                "/openai/v1/realtime/client_secrets", create_azure_client_secret, methods=["POST"]
            ),
            Route("/v1/live/sessions", create_live, methods=["POST"]),
            Route("/openai/v1/live/sessions", create_azure_live, methods=["POST"]),
            *live.routes(),
            *models.routes(),
            Route("/_fake/control", control, methods=["POST"]),
            Route("/_fake/requests", received, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
