"""The benchmark's harness: the processes it starts (Redis, fake upstreams, brokers,
floors), the load it drives them with (wrk), and the helpers its scripts share (run.py,
slow.py, percore.py, calls.py, ab.py)."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT / "service"), str(ROOT / "tests")]

from servers import RedisServer, free_port  # noqa: E402
from tokenbroker.dev.tokens import sign_token  # noqa: E402

SECRET = "bench-hs256-secret-0123456789abcdef-0123"
ISSUER, AUDIENCE, API_KEY = "https://bench.test", "tokenbroker", "sk-bench-key"
MODEL = "gpt-4o-mini-realtime-preview"
ORIGIN = "https://app.bench.test"  # mint.lua sends it, as a browser app would


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: int
    users: int
    memory_users: int
    slow_concurrency: int
    soak_seconds: int
    many_policies: int
    many_assignments: int


FULL = Plan(
    rounds=5,
    seconds=5,
    users=2000,
    memory_users=100_000,
    slow_concurrency=1000,
    soak_seconds=120,
    many_policies=1000,
    many_assignments=100_000,
)
SMOKE = Plan(
    rounds=1,
    seconds=1,
    users=50,
    memory_users=500,
    slow_concurrency=20,
    soak_seconds=2,
    many_policies=10,
    many_assignments=100,
)


class Server:
    """A child process on a known port, output to a file, ready when /healthz answers."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        workdir: Path,
        env: dict[str, str] | None = None,
        health: str = "/healthz",
    ) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.request: dict[str, str] = {}  # MINT_PATH / MINT_BODY for wrk, if not the seed's
        self.log = open(workdir / f"{name}.log", "w")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"{name} exited; see {self.log.name}"
            try:
                if health == "tcp":
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                if httpx.get(self.url + health, timeout=1).status_code < 500:
                    break
            except (httpx.HTTPError, OSError):
                pass
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process (all its threads) has used so far."""
        return cpu_seconds(self.proc.pid)

    def pin(self, core: int) -> None:
        """Keep the process and all its threads on one core."""
        subprocess.run(["taskset", "-a", "-pc", str(core), str(self.proc.pid)], check=True,
                       capture_output=True)  # fmt: skip

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()  # nothing for a process already reaped (a killed replica)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Bench:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan, self.workdir = plan, workdir
        self.servers: list[Server] = []
        self.store = RedisServer(workdir)  # the test suite's redis-server helper
        self.redis_url = self.store.url

    def start(self, name: str, argv: list[str], **kwargs: Any) -> Server:
        server = Server(name, argv, kwargs.pop("port", None) or free_port(), self.workdir, **kwargs)
        self.servers.append(server)
        return server

    def redis(self) -> None:
        self.store.start()

    def fake(self, name: str, latency_ms: int = 0) -> Server:
        port = free_port()
        return self.start(
            name,
            [
                sys.executable,
                "-m",
                "tokenbroker",
                "fake-upstream",
                "--port",
                str(port),
                "--no-record",
                "--latency-ms",
                str(latency_ms),
            ],
            port=port,
        )

    def floor(self, name: str, upstream: Server) -> Server:
        port = free_port()
        return self.start(
            name,
            [
                sys.executable,
                str(HERE / "floor.py"),
                "--upstream",
                upstream.url + "/v1",
                "--port",
                str(port),
            ],
            port=port,
            health="tcp",
        )

    def broker(
        self,
        name: str,
        upstream: Server,
        policies: Path,
        prefix: str,
        dialect: str = "openai-beta",
        extra: dict[str, Any] | None = None,
        python: str | None = None,
    ) -> Server:
        port = free_port()
        config = {
            "server": {"host": "127.0.0.1", "port": port},
            "upstream": {"url": upstream.url + "/v1", "timeout": "10s", "dialect": dialect},
            "redis": {"url": self.redis_url, "prefix": prefix},
            "policies": {"file": str(policies)},
            "auth": {
                "providers": [
                    {
                        "name": "bench",
                        "issuer": ISSUER,
                        "audiences": [AUDIENCE],
                        "algorithms": ["HS256"],
                        "hs256_secret_env": "BENCH_JWT_SECRET",
                    }
                ]
            },
            "shutdown": {"delay": "10ms", "grace": "5s"},
            "cors": {"allowed_origins": [ORIGIN]},
            **(extra or {}),
        }
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return self.start(
            name,
            [python or sys.executable, "-m", "tokenbroker", "serve", "--config", str(path)],
            port=port,
            env={"BENCH_JWT_SECRET": SECRET, "OPENAI_API_KEY": API_KEY},
        )

    def tokens(self, name: str, users: list[str]) -> Path:
        path = self.workdir / f"{name}.tokens"
        path.write_text(
            "\n".join(
                sign_token(SECRET, issuer=ISSUER, audience=AUDIENCE, sub=u, ttl=3600) for u in users
            )
        )
        return path

    def wrk(self, target: Server, tokens: Path, connections: int, seconds: int) -> dict[str, Any]:
        (result,) = self.wrk_together([(target, tokens)], connections, seconds)
        return result

    def wrk_together(
        self, targets: list[tuple[Server, Path]], connections: int, seconds: int
    ) -> list[dict[str, Any]]:
        """One wrk per target, all running at the same time; their results in order."""
        threads = 1 if connections < 8 or len(targets) > 1 else 2
        loads = [
            subprocess.Popen(
                [
                    "wrk",
                    f"-t{threads}",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(HERE / "mint.lua"),
                    target.url,
                ],
                env={**os.environ, "TOKENS": str(tokens), **target.request},
                stdout=subprocess.PIPE,
                text=True,
            )
            for target, tokens in targets
        ]
        results = []
        for load in loads:
            out, _ = load.communicate(timeout=seconds + 60)
            assert load.returncode == 0, out
            results.append(json.loads(out.split("JSON ", 1)[1]))
        return results

    def loaded(self, target: Server, tokens: Path, seconds: int = 0) -> tuple[float, float]:
        """Mints/s at saturation (64 connections) and the target's CPU µs per mint."""
        (result,) = self.loaded_together([(target, tokens)], 64, seconds or self.plan.seconds)
        return result

    def loaded_together(
        self, targets: list[tuple[Server, Path]], connections: int, seconds: int
    ) -> list[tuple[float, float]]:
        """Each target's mints/s and CPU µs per mint, all loaded at the same time."""
        used = [target.cpu_seconds() for target, _ in targets]
        runs = self.wrk_together(targets, connections, seconds)
        results = []
        for (target, _), before, run_ in zip(targets, used, runs, strict=True):
            assert run_["non2xx"] == 0 and run_["socket_errors"] == 0, (target.name, run_)
            results.append((run_["rps"], (target.cpu_seconds() - before) / run_["requests"] * 1e6))
        return results

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.store.stop()


def policies_file(path: Path, count: int, assignments: int) -> Path:
    base = {
        "models": [MODEL],
        "voices": ["alloy", "ash"],
        "temperature": {"max": 1.0},
        "limits": [{"limit": 1_000_000, "per": "1s"}, {"limit": 100_000_000, "per": "1d"}],
    }
    policies = {"bench": base} | {f"plan-{i}": {"extends": "bench"} for i in range(count - 1)}
    users = {
        f"assigned-{i}": f"plan-{i % max(count - 1, 1)}" if count > 1 else "bench"
        for i in range(assignments)
    }
    path.write_text(
        yaml.safe_dump({"default_policy": "bench", "policies": policies, "users": users})
    )
    return path


def redis_stats(url: str) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(url)
    stats: Any = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def paired(a: list[float], b: list[float], *, ratio: bool) -> float:
    """Median over rounds of a/b (or a - b) for measurements taken back to back."""
    return median([x / y if ratio else x - y for x, y in zip(a, b, strict=True)])


def machine() -> dict[str, Any]:
    """What the figures were taken on: the cores, and the interpreter every Python process
    of the run uses (its build moves the CPU per mint by ~16 %: docs/performance.md)."""
    return {"cpus": os.cpu_count(), "python": os.path.realpath(sys.executable),
            "python_version": platform.python_version()}  # fmt: skip
