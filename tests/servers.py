"""Real servers for tests: redis-server and tokenbroker processes on loopback.

Readiness is awaited by reading the process's own "ready" log line, never by sleeping.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process whose combined output is kept and can be waited on line by line."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Block until a line matches ``pattern``; fail with the output so far if it never does."""
        regex = re.compile(pattern)
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"{self.argv} never printed {pattern!r}:\n{self.output}"
                ) from None
            if line is None:
                raise AssertionError(f"{self.argv} exited before {pattern!r}:\n{self.output}")
            match = regex.search(line)
            if match:
                return match

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        self.process = Process(argv)
        self.process.wait_for(r"Ready to accept connections")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class TokenbrokerServer:
    """``python -m tokenbroker <command>`` on a free loopback port."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.process = Process([sys.executable, "-m", "tokenbroker", *args], env)
        try:
            match = self.process.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
        except AssertionError:
            self.process.stop()
            raise
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return self.process.output

    def logs(self) -> str:
        """All output so far, including the log line of every request already answered."""
        marker = f"sync-{uuid.uuid4().hex}"
        httpx.get(f"{self.url}/healthz", headers={"X-Request-ID": marker})
        self.process.wait_for(re.escape(marker))
        return self.process.output

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return self.process.stop(sig)
