"""HTTP clients for the upstream call, compared: CPU per call, one core each.

    .venv/bin/pip install aiosonic curl-cffi httpr niquests rnet   # the candidates
    .venv/bin/python tests/bench/clients.py [--busy 3000] [--seconds 4]

An instant upstream (a bare asyncio protocol answering every request with a minted
session) runs in a child process on the last core; each client, in a child process of
its own on the first core, keeps 64 calls in flight for ``--seconds`` after a 1 s
warm-up, and its CPU time (all its threads) per call is the figure. ``--busy N`` adds
two loops of N additions around each call, standing in for the broker's own work on the
same event loop. Candidates not installed are listed and skipped. Not part of the suite:
the tool behind the client choice in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

BODY = json.dumps({"model": "gpt-realtime", "voice": "alloy", "instructions": "Be brief."})
HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
REPLY = json.dumps({"id": "sess_1", "client_secret": {"value": "ek_1", "expires_at": 9}})
RESPONSE = (
    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(REPLY)}"
    f"\r\n\r\n{REPLY}"
).encode()
Call = Callable[[], Awaitable[int]]


class Instant(asyncio.Protocol):
    """Answers each request (headers and a Content-Length body) at once, keep-alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n")[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(RESPONSE)


async def serve(fd: int) -> None:
    """Serve on the listening socket the parent made (connections queue until then)."""
    listening = socket.socket(fileno=fd)
    server = await asyncio.get_running_loop().create_server(Instant, sock=listening)
    await server.serve_forever()


async def client(name: str, url: str) -> tuple[Call, Callable[[], Awaitable[Any]]]:
    """The candidate's call (returns the status) and how to close it."""
    body = BODY.encode()
    if name == "pyreqwest":
        from pyreqwest.client import ClientBuilder

        rq = ClientBuilder().max_connections(2000).follow_redirects(False).build()
        ten = timedelta(seconds=10)

        async def call() -> int:
            reply = await rq.post(url).headers(HEADERS).body_bytes(body).timeout(ten).build().send()
            await reply.bytes()
            return reply.status

        return call, rq.close
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2000, limit_per_host=0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

        async def call() -> int:
            timeout = aiohttp.ClientTimeout(total=10)
            async with session.post(
                url, data=body, headers=HEADERS, allow_redirects=False, timeout=timeout
            ) as reply:
                await reply.read()
                return reply.status

        return call, session.close
    if name == "httpr":
        import httpr  # type: ignore[import-not-found]

        hr = httpr.AsyncClient()

        async def call() -> int:
            return int((await hr.post(url, content=body, headers=HEADERS)).status_code)

        return call, hr.aclose if hasattr(hr, "aclose") else _nothing
    if name == "rnet":
        import rnet  # type: ignore[import-not-found]

        rn = rnet.Client()

        async def call() -> int:
            reply = await rn.post(url, body=body, headers=HEADERS)
            await reply.bytes()
            return int(reply.status)

        return call, _nothing
    if name == "aiosonic":
        import aiosonic  # type: ignore[import-not-found]

        sonic = aiosonic.HTTPClient()

        async def call() -> int:
            reply = await sonic.post(url, data=body, headers=HEADERS)
            await reply.content()
            return int(reply.status_code)

        return call, _nothing
    if name in ("curl_cffi", "niquests"):
        if name == "curl_cffi":
            from curl_cffi.requests import AsyncSession  # type: ignore[import-not-found]

            requests = AsyncSession(max_clients=64)
        else:
            import niquests  # type: ignore[import-not-found]

            requests = niquests.AsyncSession(pool_maxsize=64)

        async def call() -> int:
            return int((await requests.post(url, data=body, headers=HEADERS)).status_code)

        return call, requests.close
    raise ValueError(name)


async def _nothing() -> None:
    return None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(name: str, url: str, seconds: float, busy: int) -> float:
    call, close = await client(name, url)
    assert await call() == 200
    done, stop = 0, False

    async def worker() -> None:
        nonlocal done
        while not stop:
            assert await call() == 200
            done += 1
            total = 0
            for i in range(busy):
                total += i
            await asyncio.sleep(0)
            for i in range(busy):
                total += i

    async def run(duration: float) -> None:
        nonlocal stop, done
        stop, done = False, 0
        workers = [asyncio.create_task(worker()) for _ in range(64)]
        await asyncio.sleep(duration)  # the load's length, not a wait for an event
        stop = True
        await asyncio.gather(*workers)

    await run(1.0)  # warm-up: connections, caches
    before = cpu_seconds()
    await run(seconds)
    per_call = (cpu_seconds() - before) / done * 1e6
    await close()
    return per_call


CANDIDATES = ["pyreqwest", "aiohttp", "httpr", "rnet", "aiosonic", "curl_cffi", "niquests"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--clients", default=",".join(CANDIDATES), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, order alternating")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: measure this client
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)  # a child: upstream
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd:
        asyncio.run(serve(args.serve_fd))
        return
    if args.one:
        print(asyncio.run(measure(args.one, args.url, args.seconds, args.busy)))
        return
    cores = sorted(os.sched_getaffinity(0))
    listening = socket.create_server(("127.0.0.1", 0), backlog=1024)
    me = [sys.executable, __file__]
    fd = listening.fileno()
    upstream = subprocess.Popen(
        ["taskset", "-c", str(cores[-1]), *me, "--serve-fd", str(fd)], pass_fds=[fd]
    )
    try:
        url = f"http://127.0.0.1:{listening.getsockname()[1]}/v1/realtime/sessions"
        names = args.clients.split(",")
        for name in [n for i in range(args.rounds) for n in (names if i % 2 == 0 else names[::-1])]:
            argv = ["taskset", "-c", str(cores[0]), *me, "--one", name, "--url", url,
                    "--seconds", str(args.seconds), "--busy", str(args.busy)]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                missing = "ModuleNotFoundError" in done.stderr
                print(f"{name:10s} {'not installed' if missing else done.stderr.strip()[-200:]}")
                continue
            print(f"{name:10s} {float(done.stdout.strip().splitlines()[-1]):7.1f} µs CPU per call")
    finally:
        upstream.terminate()
        upstream.wait(10)


if __name__ == "__main__":
    main()
