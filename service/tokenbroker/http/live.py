"""``POST /v1/live/sessions``, OpenAI's GPT-Live create call with the user's JWT as the
key: ``{"session": {...}, "transport": {"type": "webrtc", "sdp": "<offer>"}}`` as JSON,
answered 201 with ``{"session": {"id"}, "transport": {"type": "webrtc", "sdp": "<answer>"}}``
(the official SDKs' ``client.live.create``). The family's flow does the rest."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tokenbroker.errors import InvalidRequest
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.runtime import Runtime, SessionFamily
from tokenbroker.http.body import read_json_bytes
from tokenbroker.infra import fast_json


def _family(runtime: Runtime) -> SessionFamily:
    family = runtime.families.get("live")
    if family is None:
        dialect = runtime.settings.upstream.dialect
        message = f"This broker's upstream dialect ({dialect}) has no GPT-Live API."
        raise InvalidRequest("live_not_available", message)
    return family


async def show(request: Request) -> Response:
    family = _family(request.app.state.runtime)
    context: RequestContext = request.scope["state"]["context"]
    authorization = request.headers.getlist("authorization")
    return JSONResponse(
        await family.info(authorization, request.path_params["session_id"], context)
    )


async def close(request: Request) -> Response:
    family = _family(request.app.state.runtime)
    context: RequestContext = request.scope["state"]["context"]
    authorization = request.headers.getlist("authorization")
    return JSONResponse(await family.end(authorization, request.path_params["session_id"], context))


def live_routes() -> list[Route]:
    """The owner's GET and DELETE of a GPT-Live session (creation is a hot route)."""
    return [
        Route("/v1/live/sessions/{session_id}", show, methods=["GET"]),
        Route("/v1/live/sessions/{session_id}", close, methods=["DELETE"]),
    ]


class CreateLiveRoute:
    """``POST /v1/live/sessions`` as a plain ASGI app, like the mint routes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        context: RequestContext = scope["state"]["context"]
        context.mint, context.success = True, "live_started"
        headers = scope["headers"]
        family = _family(runtime)
        raw = await read_json_bytes(headers, receive, runtime.settings.http.max_body_bytes)
        authorization = [value.decode("latin-1") for name, value in headers
                         if name == b"authorization"]  # fmt: skip
        reply = await family.create(authorization, raw, context)
        response = Response(fast_json.dumps(reply.body), reply.status, headers=reply.headers,
                            media_type="application/json")  # fmt: skip
        await response(scope, receive, send)
