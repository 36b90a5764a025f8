"""Real servers for tests: redis-server and tokenbroker processes on loopback.

Readiness is awaited by reading the process's own "ready" log line, never by sleeping.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

START_TIMEOUT = 20.0


def wait_until(condition: Callable[[], object], limit: float = 10.0, pause: float = 0.01) -> float:
    """Seconds until ``condition()`` is true, checking every ``pause``; fails after ``limit``.

    The one way tests wait for something another process does: bounded, and never a
    busy loop (``pause`` is short against what is measured with it)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, "condition never held"
        time.sleep(pause)
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port P with P + 10000 free too (Redis Cluster's bus), and P <= 55535."""
    while True:
        port = random.randint(20000, 55000)  # noqa: S311  # not crypto
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class Process:
    """A child process whose combined output is kept and can be waited on line by line."""

    def __init__(
        self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            text=True,
            start_new_session=True,
            cwd=cwd,
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
    """A redis-server on loopback; ``extra`` adds options (TLS, cluster mode)."""

    def __init__(self, directory: Path, extra: Sequence[str] = (), *, tls: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = list(extra)
        self.tls = tls
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port)]
        argv = [
            "redis-server",
            *ports,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            *self.extra,
        ]
        self.process = Process(argv)
        self.process.wait_for(r"Ready to accept connections")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class RedisCluster:
    """Three cluster-mode redis-servers joined into one cluster (no replicas)."""

    def __init__(self, directory: Path) -> None:
        self.nodes = []
        for i in range(3):
            node_dir = directory / f"node{i}"
            node_dir.mkdir()
            node = RedisServer(
                node_dir, ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            )
            node.port = free_cluster_port()
            self.nodes.append(node)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for node in self.nodes:  # every node must agree the cluster is up
            assert node.process is not None
            node.process.wait_for(r"Cluster state changed: ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    later = now + datetime.timedelta(days=1)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test ca"))
        .issuer_name(name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca": directory / "ca.crt",
        "cert": directory / "server.crt",
        "key": directory / "server.key",
    }
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class TokenbrokerServer:
    """``python -m tokenbroker <command>`` on a free loopback port."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.process = Process([sys.executable, "-m", "tokenbroker", *args], env, cwd)
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
