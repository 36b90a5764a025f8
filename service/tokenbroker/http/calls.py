"""The live-call endpoints: ``POST /v1/realtime/calls`` (an SDP offer, alone or with a GA
session as ``multipart/form-data``, like OpenAI's), and the owner's hang-up,
``DELETE /v1/realtime/calls/{call_id}`` or ``POST /v1/realtime/calls/{call_id}/hangup``."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from importlib import resources
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tokenbroker.errors import InvalidRequest, NotFound, UnsupportedMediaType
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.runtime import CallFamily, Runtime
from tokenbroker.http.body import RawHeaders, media_type, read_body
from tokenbroker.infra import strict_json

PARTS = ("sdp", "session")
CLIENT_JS = resources.files(__package__).joinpath("client.js").read_text()  # the browser client


def _flow(runtime: Runtime) -> CallFamily:
    if runtime.calls is None:
        raise NotFound("not_found", "Live calls are not enabled on this broker.")
    return runtime.calls


async def _parts(headers: RawHeaders, raw: bytes) -> dict[str, str]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield raw

    parsed = Headers(raw=list(headers))
    _, options = parse_options_header(parsed.get("content-type", ""))
    if b"boundary" not in options:
        raise InvalidRequest("invalid_multipart", "The multipart body has no boundary.")
    parser = MultiPartParser(parsed, stream(), max_files=2, max_fields=2)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(
            "invalid_multipart", f"The multipart body is invalid: {exc.message}"
        ) from None
    parts: dict[str, str] = {}
    try:
        for name, value in form.multi_items():
            if name not in PARTS:
                raise InvalidRequest("unknown_parameter", f"Unknown part: '{name}'.", param=name)
            if name in parts:
                raise InvalidRequest("invalid_multipart", f"The part '{name}' is repeated.",
                                     param=name)  # fmt: skip
            data = await value.read() if isinstance(value, UploadFile) else value
            try:
                parts[name] = data.decode("utf-8") if isinstance(data, bytes) else data
            except UnicodeDecodeError:
                raise InvalidRequest("invalid_multipart", f"The part '{name}' is not UTF-8.",
                                     param=name) from None  # fmt: skip
    finally:
        await form.close()
    return parts


async def read_offer(headers: RawHeaders, receive: Receive, limit: int) -> tuple[Any, Any]:
    """The SDP offer and the session (None when only an offer was sent)."""
    media = media_type(headers)
    if media not in ("application/sdp", "multipart/form-data"):
        message = (
            "Send the SDP offer as application/sdp, or sdp and session as multipart/form-data."
        )
        raise UnsupportedMediaType("unsupported_media_type", message)
    raw = await read_body(headers, receive, limit)
    if media == "application/sdp":
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError:
            raise InvalidRequest(
                "invalid_offer", "The SDP offer is not UTF-8.", param="sdp"
            ) from None
    parts = await _parts(headers, raw)
    session = None
    if "session" in parts:
        try:
            session = strict_json.loads(parts["session"])
        except (ValueError, RecursionError):
            raise InvalidRequest("invalid_json", "The session part is not valid JSON.",
                                 param="session") from None  # fmt: skip
    return parts.get("sdp"), session


class CreateCallRoute:
    """``POST /v1/realtime/calls`` as a plain ASGI app, like the mint routes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        context: RequestContext = scope["state"]["context"]
        context.mint, context.success = True, "call_started"
        headers = scope["headers"]
        authorization = [value.decode("latin-1") for name, value in headers
                         if name == b"authorization"]  # fmt: skip
        flow = _flow(runtime)
        sdp, session = await read_offer(headers, receive, runtime.settings.http.max_body_bytes)
        reply = await flow.create(authorization, sdp, session, context)
        response = Response(reply.answer, 201, headers=reply.headers, media_type="application/sdp")
        await response(scope, receive, send)


async def show(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    context: RequestContext = request.scope["state"]["context"]
    authorization = request.headers.getlist("authorization")
    return JSONResponse(
        await _flow(runtime).info(authorization, request.path_params["call_id"], context)
    )


async def client_js(request: Request) -> Response:
    return Response(CLIENT_JS, media_type="text/javascript")


async def hang_up(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    context: RequestContext = request.scope["state"]["context"]
    authorization = request.headers.getlist("authorization")
    body = await _flow(runtime).hang_up(authorization, request.path_params["call_id"], context)
    return JSONResponse(body)


def call_routes() -> list[Route]:
    return [
        Route("/v1/client.js", client_js, methods=["GET"]),
        Route("/v1/realtime/calls/{call_id}", show, methods=["GET"]),
        Route("/v1/realtime/calls/{call_id}", hang_up, methods=["DELETE"]),
        Route("/v1/realtime/calls/{call_id}/hangup", hang_up, methods=["POST"]),
    ]
