"""A TCP proxy on loopback that can hold what clients send before passing it on.

It keeps forwarding after the client has gone, so a request that a client gave up on
still reaches the server late, as on a slow network path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class DelayProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0  # seconds a chunk from a client waits before it is forwarded
        self.only = b""  # ... if it contains these bytes (b"": every chunk)
        self.late = threading.Event()  # set when a held chunk has been passed on
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, sock=self._sock)
        )
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def inbound() -> None:
            while data := await reader.read(65536):
                if self.delay and self.only in data:
                    await asyncio.sleep(self.delay)  # the slow path being simulated
                    up_writer.write(data)
                    await up_writer.drain()
                    self.late.set()
                    continue
                up_writer.write(data)
                await up_writer.drain()
            await asyncio.sleep(1)  # let the server answer what arrived last

        async def outbound() -> None:
            while data := await up_reader.read(65536):
                with contextlib.suppress(ConnectionError):
                    writer.write(data)

        try:
            await asyncio.gather(inbound(), outbound(), return_exceptions=True)
        finally:
            for stream in (writer, up_writer):
                stream.close()

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
