"""The live-call benchmark: what one broker process holds and how fast it accounts.

Starts redis-server, the fake upstream and a broker (separate processes), then:

- opens ``--calls`` live calls through the broker and keeps their sidebands idle: the
  process's RSS per call, and that every sideband is open;
- has the fake upstream push ``response.done`` events over those sidebands as fast as it
  can: events accounted per second (until the broker's usage counter has them all), the
  broker's CPU per event, and Redis commands and CPU per event;
- starts a second broker on the same Redis, kills the first with SIGKILL and times how
  long until every call is re-attached by the second (lease included).

    python3 tests/bench/calls.py              # 5 000 calls (a few minutes)
    python3 tests/bench/calls.py --smoke      # 50 calls: checks that it works
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from harness import AUDIENCE, ISSUER, SECRET, Bench, Plan, Server, machine, redis_stats  # noqa: E402

from tokenbroker.dev.tokens import sign_token  # noqa: E402

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
POLICY = """
default_policy: bench
policies:
  bench:
    models: [gpt-realtime]
    limits: [{limit: 1000000, per: 1s}]
    budgets: [{tokens: 1000000000000, per: 1d}]
"""
LEASE = 3.0


def _raise_fd_limit() -> None:
    """Children inherit it: 5 000 sidebands are 5 000 sockets in each of two processes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def _metric(server: Server, name: str) -> float:
    """The sum of ``name``'s samples, whatever their labels (api, …)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)  # fmt: skip


def _summary(fake: Server) -> dict[str, int]:
    reply = httpx.get(f"{fake.url}/_fake/calls", params={"summary": 1}, timeout=30)
    return reply.json()  # type: ignore[no-any-return]


def _wait(condition: Any, limit: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise SystemExit("the benchmark's condition never held")
        time.sleep(0.05)
    return time.monotonic() - started


async def _open_calls(broker: Server, count: int) -> int:
    """Open ``count`` calls, 64 at a time; how many attempts a dropped connection retried."""
    headers = {"Content-Type": "application/sdp"}
    limits = httpx.Limits(max_connections=64)
    retried = 0
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            nonlocal retried
            sub = f"caller-{i}"
            token = sign_token(SECRET, issuer=ISSUER, audience=AUDIENCE, sub=sub, ttl=3600)
            signed = {**headers, "Authorization": f"Bearer {token}"}
            for attempt in range(3):
                try:
                    async with gate:
                        reply = await client.post(f"{broker.url}/v1/realtime/calls",
                                                  content=OFFER, headers=signed)  # fmt: skip
                    break
                except httpx.TransportError:  # a kept-alive connection closed under us
                    retried += 1
                    if attempt == 2:
                        raise
            if reply.status_code != 201:
                raise SystemExit(f"call {i}: {reply.status_code} {reply.text}")

        await asyncio.gather(*(one(i) for i in range(count)))
    return retried


def _redis_cpu(url: str) -> float:
    import redis

    info: Any = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run(calls: int, events: int, window: float, out: Path) -> dict[str, Any]:
    _raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="tb-calls-bench-"))
    plan = Plan(1, 1, 1, 1, 1, 1, 1, 1)
    bench = Bench(plan, workdir)
    bench.redis()
    policies = workdir / "policies.yaml"
    policies.write_text(POLICY)
    extra = {"upstream": {"url": "", "timeout": "30s", "connect_timeout": "10s",
                          "dialect": "openai"},
             "calls": {"lease": f"{LEASE:g}s", "renew_interval": "500ms"}}  # fmt: skip
    result: dict[str, Any] = {"calls": calls, "lease_seconds": LEASE, "machine": machine()}
    try:
        fake = bench.fake("fake")
        extra["upstream"]["url"] = fake.url + "/v1"
        first = bench.broker("broker-a", fake, policies, "calls", "openai", extra)
        idle_rss = first.rss_kib()
        started = time.monotonic()
        result["open_retries"] = asyncio.run(_open_calls(first, calls))
        result["open_seconds"] = round(time.monotonic() - started, 2)
        _wait(lambda: _summary(fake)["sidebands"] >= calls, 120)
        _wait(lambda: _metric(first, "tokenbroker_live_calls") >= calls, 60)
        rss = first.rss_kib()
        result["rss_idle_mib"] = round(idle_rss / 1024, 1)
        result["rss_with_calls_mib"] = round(rss / 1024, 1)
        result["kib_per_call"] = round((rss - idle_rss) / calls, 1)
        cpu_idle = first.cpu_seconds()
        time.sleep(window)  # the measurement window of idle CPU (leases, heartbeats)
        result["idle_cpu_percent"] = round((first.cpu_seconds() - cpu_idle) / window * 100, 1)

        counter = "tokenbroker_call_usage_tokens_total"
        before_tokens = _metric(first, counter)
        stats, redis_cpu = redis_stats(bench.redis_url), _redis_cpu(bench.redis_url)
        cpu = first.cpu_seconds()
        started = time.monotonic()
        sent = httpx.post(f"{fake.url}/_fake/burst", json={"events": events, "tokens": 10},
                          timeout=300).json()["sent"]  # fmt: skip
        _wait(lambda: _metric(first, counter) - before_tokens >= sent * 10, 300)
        seconds = time.monotonic() - started
        after = redis_stats(bench.redis_url)
        commands = sum(after.values()) - sum(stats.values())
        result["usage"] = {
            "events": sent,
            "events_per_second": round(sent / seconds),
            "broker_cpu_us_per_event": round((first.cpu_seconds() - cpu) / sent * 1e6, 1),
            "redis_commands_per_event": round(commands / sent, 2),
            "redis_evalsha_per_event": round(
                (after.get("evalsha", 0) - stats.get("evalsha", 0)) / sent, 2
            ),
            "redis_cpu_us_per_event": round(
                (_redis_cpu(bench.redis_url) - redis_cpu) / sent * 1e6, 1
            ),
        }

        second = bench.broker("broker-b", fake, policies, "calls", "openai", extra)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        killed = time.monotonic()
        _wait(lambda: _summary(fake)["reattached"] >= calls, 120)
        result["adoption"] = {
            "seconds_after_kill": round(time.monotonic() - killed, 2),
            "adopted": int(_metric(second, "tokenbroker_call_adoptions_total")),
        }
    finally:
        bench.stop()  # the killed replica too (already reaped: its log is closed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calls.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="50 calls, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    calls, events, window = (50, 500, 1.0) if args.smoke else (5000, 50_000, 10.0)
    result = run(calls, events, window, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
