"""Running the app under uvicorn, with a graceful drain on SIGTERM.

On the first SIGTERM (or SIGINT) the replica reports not ready (``/readyz`` 503) but
keeps serving for ``shutdown_delay`` so load balancers and Kubernetes endpoints stop
sending it traffic; then uvicorn stops accepting connections and gives in-flight
requests up to ``shutdown_grace`` to finish; the lifespan then flushes the audit trail
and the process exits 0. A second signal skips the delay.

After a server that started has stopped, the process ends at once (logs flushed, then
``os._exit(0)``) rather than through the interpreter's finalization: the mint client's
Rust runtime thread (pyreqwest) can still be letting go of Python objects then, and
CPython aborts a process whose foreign thread does that while it finalizes (seen as
"PyGILState_Release ... finalizing" and exit code 134 in a client loop). Everything the
broker owns is closed by its lifespan before that point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from tokenbroker.http.protocol import ProtocolLimits, bounded_protocol

log = logging.getLogger("tokenbroker")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette, delay: float) -> None:
        super().__init__(config)
        self._app = app
        self._delay = delay
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises a captured signal after shutting down, which would end the
        # process with -SIGTERM; a completed drain is a clean exit, so SIGTERM is not
        # captured. SIGINT keeps uvicorn's behaviour (and a second one forces the exit).
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        if self._draining or self._delay <= 0:
            self.should_exit = True
            return
        self._draining = True
        runtime = getattr(self._app.state, "runtime", None)
        if runtime is not None:
            runtime.draining = True
            self._app.state.metrics.draining.set(1)
        log.info("SIGTERM: not ready; closing the listener in %.1f s", self._delay)
        timer = threading.Timer(self._delay, lambda: setattr(self, "should_exit", True))
        timer.daemon = True
        timer.start()


def run(
    app: Any,
    host: str,
    port: int,
    *,
    delay: float = 0.0,
    grace: float | None = None,
    limits: ProtocolLimits | None = None,
) -> None:
    # asyncio's own loop, not uvloop: libuv accepts one connection per loop turn, so
    # under overload a burst of new connections waited seconds to be accepted (in the
    # benchmark's 1 000-connection run some requests timed out after 10 s on uvloop and
    # none on asyncio, at the same throughput); asyncio accepts all pending connections.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        http=bounded_protocol(limits or ProtocolLimits()),
        log_config=None,
        lifespan="on",
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=None if grace is None else max(1, round(grace)),
        backlog=4096,
    )
    if isinstance(app, Starlette):
        server = DrainingServer(config, app, delay)
        server.run()
        if server.started:  # a start-up failure goes on to the usual exit and its status
            end_process()
    else:  # pragma: no cover
        uvicorn.Server(config).run()


def end_process() -> None:
    """Exit 0 now, without the interpreter's finalization (see the module's notes)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@contextlib.asynccontextmanager
async def serve_in_thread(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` from a thread of this process on a free port of ``host``; yields its URL.

    The socket listens before the thread starts, so callers can connect at once (the
    kernel queues connections until the thread's loop accepts them). ``tokenbroker dev``
    serves its fake upstream this way, so it goes through the same client as production.
    """
    sock = socket.create_server((host, 0))
    # The bounded protocol writes a reply's head and body as one segment: uvicorn's own
    # writes them apart, and the second waited for the client's delayed ACK (~40 ms a
    # request on a kept-alive connection: every dev-mode mint after the first).
    config = uvicorn.Config(app, loop="asyncio", log_config=None, lifespan="off",
                            access_log=False, http=bounded_protocol(ProtocolLimits()))  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"serve-{host}", daemon=True
    )
    quiet = _QuietBelowWarning(thread)  # its start/stop lines would read as the main server's
    logging.getLogger("uvicorn.error").addFilter(quiet)
    thread.start()
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join)
        sock.close()
        logging.getLogger("uvicorn.error").removeFilter(quiet)


class _QuietBelowWarning(logging.Filter):
    """Drops one thread's records below WARNING (filters run in the logging thread)."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__()
        self._thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or threading.current_thread() is not self._thread
