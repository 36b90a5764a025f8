"""The HTTP edge: request ids, no-store headers, one log line per request, no stack traces.

A pure ASGI middleware, outermost in the stack. Whatever happens inside, the client gets
a reply with ``X-Request-ID`` and the security headers, and an unexpected exception
becomes a plain JSON 500 (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenbroker.errors import Unavailable, error_body, render
from tokenbroker.flow.context import RequestContext
from tokenbroker.http.body import header
from tokenbroker.infra.audit import AuditTrail
from tokenbroker.infra.logs import AccessLog
from tokenbroker.infra.metrics import Metrics
from tokenbroker.infra.redis import STORE_ERRORS

log = logging.getLogger("tokenbroker.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
]


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is sane, else a new random one (128 bits, hex).

    A request id correlates log lines and guards nothing, so it comes from the process's
    seeded generator: no system call per request (os.urandom's took ~2 % of the broker's
    samples under load on the benchmark's VM)."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SANE_ID.match(text):
                return text
            break
    return f"{random.getrandbits(128):032x}"


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        audit: Callable[[Scope], AuditTrail | None],
        access: AccessLog | None = None,
    ) -> None:
        """``audit`` finds the running app's audit trail (None before start-up)."""
        self.app = app
        self.metrics = metrics
        self._access = access or AccessLog("text", "info")
        self._find_audit = audit
        self._audit: AuditTrail | None = None  # found once, then kept: it lives as long as the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        client = scope.get("client")
        context = RequestContext(
            request_id=request_id,
            client_ip=client[0] if client else "",
            user_agent=header(scope["headers"], b"user-agent") or "",
        )
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["context"] = context
        status = 500
        response_started = False
        extra = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in extra if name not in present
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            # The shutdown grace ran out with this request in flight: it gets a clean 503
            # to retry elsewhere (its charge went back in the flow), not a 500.
            if response_started:
                raise
            status = 503
            context.error = Unavailable("shutting_down", "The broker is shutting down; retry.",
                                        headers={"Retry-After": "1"})  # fmt: skip
            await self._reply(context.error, send_with_headers, close=True)
        except ClientDisconnect:
            # The client left before its body arrived: nobody to answer and nothing broken,
            # so no traceback and no 500 in the metrics. 499 is nginx's "client closed
            # request", used here only in the log line and the outcome.
            status = 499
        except STORE_ERRORS as exc:
            # Redis failed on a path that has no fail mode of its own: the same 503 as the
            # limiter's closed mode, never a 500
            log.warning("store error (%s)", type(exc).__name__, extra={"request_id": request_id})
            if not response_started:
                status = 503
                context.error = Unavailable("store_unavailable", "The store is unavailable; "
                                            "retry.", headers={"Retry-After": "1"})  # fmt: skip
                await self._reply(context.error, send_with_headers)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                body = error_body("server_error", "internal_error", "Internal error.", None)
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_headers({"type": "http.response.body", "body": body})
        finally:
            self._finish(scope, context, status, time.perf_counter() - started)

    @staticmethod
    async def _reply(error: Unavailable, send: Send, *, close: bool = False) -> None:
        body = render(error)
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _finish(self, scope: Scope, context: RequestContext, status: int, elapsed: float) -> None:
        """The one end of every request: its outcome, log line, metrics and audit entry."""
        outcome = context.finish(status)
        fields: dict[str, Any] = {
            "request_id": context.request_id,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "latency_ms": round(elapsed * 1000, 3),
        }
        if context.mint:
            fields.update(
                user=context.user,
                policy=context.policy,
                model=context.model,
                outcome=outcome,
                upstream_ms=context.upstream_ms,
                **context.extra,
            )
            self.metrics.mint_outcome(context.policy or "none", outcome).inc()
            self.metrics.mint_seconds.observe(elapsed)
            entry = context.audit_entry()
            if entry is not None:
                self._audit = self._audit or self._find_audit(scope)
                if self._audit is not None:
                    self._audit.record(entry)
        self._access.write(fields)
