"""The admin HTTP API under ``/admin/``: the operator commands over HTTP.

Mounted only when ``TOKENBROKER_ADMIN_TOKEN`` is set. The credential is compared in
constant time with the bearer token; an end-user JWT can never equal it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenbroker.errors import AuthenticationFailed, InvalidRequest, UnsupportedMediaType
from tokenbroker.flow.operations import Operations
from tokenbroker.http.body import media_type, read_body
from tokenbroker.infra.strict_json import parse_json

MAX_POLICY_BYTES = 4 * 1024 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")
Handler = Callable[[Request], Awaitable[Response]]


def _operations(request: Request) -> Operations:
    operations: Operations = request.app.state.runtime.operations
    return operations


async def _adopt(request: Request) -> None:
    """The replica that took a change serves it at once; the others follow by notification."""
    await request.app.state.runtime.broker.policies.refresh()


def admin_routes(admin_token: str) -> list[Route]:
    # The header's bytes as sent (a UTF-8 token stays UTF-8), compared in constant time.
    expected = f"Bearer {admin_token}".encode()

    def guarded(handler: Handler) -> Handler:
        async def check(request: Request) -> Response:
            sent = [v for n, v in request.scope["headers"] if n == b"authorization"]
            if len(sent) > 1:
                raise InvalidRequest("invalid_request", "Send one Authorization header.")
            given = sent[0] if sent else b""
            if not given:
                raise AuthenticationFailed("missing_token", "admin call without credential")
            if not hmac.compare_digest(given, expected):
                raise AuthenticationFailed("invalid_token", "admin call with a wrong credential")
            return await handler(request)

        return check

    async def show(request: Request) -> Response:
        live, _ = await _operations(request).live()
        body = {"version": live.version, "text": live.text} if live else {"version": 0}
        return JSONResponse(body)

    async def apply(request: Request) -> Response:
        if media_type(request.scope["headers"]) not in YAML_TYPES:
            raise UnsupportedMediaType(
                "unsupported_media_type", "Send the policy file as application/yaml."
            )
        raw = await read_body(request.scope["headers"], request.receive, MAX_POLICY_BYTES)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise InvalidRequest("invalid_policy", "The policy file is not UTF-8.") from None
        dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
        applied = await _operations(request).apply(
            text, dry_run=dry_run, note=request.query_params.get("note", "admin api")
        )
        await _adopt(request)
        body = {"diff": applied.diff, "version": applied.version, "notes": list(applied.notes)}
        return JSONResponse(body)

    async def history(request: Request) -> Response:
        items = await _operations(request).history()
        return JSONResponse(
            {"versions": [{"version": v.version, "applied_at": v.applied_at, "note": v.note}
                          for v in items]}
        )  # fmt: skip

    async def rollback(request: Request) -> Response:
        version = await _operations(request).rollback(int(request.path_params["version"]))
        await _adopt(request)
        return JSONResponse({"version": version})

    async def user(request: Request) -> Response:
        operations, sub = _operations(request), request.path_params["sub"]
        if request.method == "PUT":
            raw = await read_body(request.scope["headers"], request.receive, 4096)
            body: Any = parse_json(raw or b"{}")
            policy = body.get("policy") if isinstance(body, dict) else None
            if not isinstance(policy, str):
                raise InvalidRequest("invalid_type", "'policy' must be a string.", param="policy")
            await operations.assign(sub, policy)
        elif request.method == "DELETE":
            await operations.unassign(sub)
        await _adopt(request)
        return JSONResponse(await operations.user(sub))

    async def reset(request: Request) -> Response:
        operations, sub = _operations(request), request.path_params["sub"]
        await operations.reset(sub)
        return JSONResponse(await operations.user(sub))

    async def calls(request: Request) -> Response:
        return JSONResponse({"calls": await _operations(request).calls()})

    async def hang_up(request: Request) -> Response:
        return JSONResponse(await _operations(request).hang_up(request.path_params["call_id"]))

    return [
        Route("/admin/calls", guarded(calls), methods=["GET"]),
        Route("/admin/calls/{call_id:str}/hangup", guarded(hang_up), methods=["POST"]),
        Route("/admin/policy", guarded(show), methods=["GET"]),
        Route("/admin/policy", guarded(apply), methods=["POST"]),
        Route("/admin/policy/history", guarded(history), methods=["GET"]),
        Route("/admin/policy/rollback/{version:int}", guarded(rollback), methods=["POST"]),
        Route("/admin/users/{sub:str}", guarded(user), methods=["GET", "PUT", "DELETE"]),
        Route("/admin/users/{sub:str}/reset", guarded(reset), methods=["POST"]),
    ]
