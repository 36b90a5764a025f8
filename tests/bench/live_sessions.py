"""The GPT-Live watch under load: sessions held, usage accounted, drift reverted, adoption.

Starts redis-server, the fake upstream and one broker as separate processes, like
calls.py does for Realtime calls, and measures for GPT-Live sessions:

1. N sessions opened through ``POST /v1/live/sessions`` (64 at a time); RSS before and
   after gives the memory per session; CPU over an idle window the cost of holding them.
2. Usage figures pushed round-robin over the sidebands in chunks of 1 000 as fast as the
   fake can send them, each chunk counted before the next (a sustained rate, not an
   overload: a replica whose loop lags past its lease lets its sessions go, by design);
   the Redis cost per figure (one ``cumulative.lua`` call) from its command statistics.
3. Spent budgets: sessions of users with a small budget are told of usage past it while
   the others' usage goes on; each is timed from the fake's figure to the broker's
   ``session.close`` arriving on the sideband. p50 and p99.
4. Drift-to-revert latency: the fake drifts sessions' delegation one every few ms while
   usage figures arrive at the rate real sessions send them (about one a minute each);
   each drift is timed from the fake's ``session.updated`` to the broker's corrective
   ``session.update`` arriving on the sideband. p50 and p99.
5. A second broker, the first killed (SIGKILL): time until every sideband is re-attached.

    python3 tests/bench/live_sessions.py            # 5 000 sessions (a few minutes)
    python3 tests/bench/live_sessions.py --smoke    # 50 sessions, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from calls import LEASE, _metric, _raise_fd_limit, _redis_cpu, _wait  # noqa: E402
from harness import AUDIENCE, ISSUER, SECRET, Bench, Plan, Server, machine, redis_stats  # noqa: E402

from tokenbroker.dev.tokens import sign_token  # noqa: E402

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
POLICY = """
default_policy: bench
policy_claim: tier
policies:
  bench:
    models: [gpt-realtime]
    limits: [{limit: 1000000, per: 1s}]
    budgets: [{seconds: 1000000000000, per: 1d}]
    live:
      models: [gpt-live-1.1]
      delegation: {mode: client}
  capped:
    extends: bench
    budgets: [{seconds: 10, per: 1d}]
"""


def _stage(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _summary(fake: Server) -> dict[str, Any]:
    reply = httpx.get(f"{fake.url}/_fake/live", params={"summary": 1}, timeout=60)
    return reply.json()  # type: ignore[no-any-return]


async def _open_sessions(broker: Server, count: int, tier: str = "bench") -> list[str]:
    body = json.dumps({"session": {}, "transport": {"type": "webrtc", "sdp": OFFER}})
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=60) as client:
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            token = sign_token(SECRET, issuer=ISSUER, audience=AUDIENCE, sub=f"{tier}-{i}",
                               ttl=3600, claims={"tier": tier})  # fmt: skip
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            for attempt in range(3):
                try:
                    async with gate:
                        reply = await client.post(f"{broker.url}/v1/live/sessions",
                                                  content=body, headers=headers)  # fmt: skip
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            if reply.status_code != 201:
                raise SystemExit(f"session {i}: {reply.status_code} {reply.text}")
            ids.append(reply.json()["session"]["id"])

        ids: list[str] = []
        await asyncio.gather(*(one(i) for i in range(count)))
        return ids


def _counted_seconds(url: str) -> int:
    """The voice seconds the budgets' windows hold, all users together."""
    import redis

    client = redis.Redis.from_url(url)
    return sum(int(client.hget(key, "s") or 0) for key in client.scan_iter(match="live*:use:*"))


def _counted_at_least(url: str, seconds: int) -> bool:
    return _counted_seconds(url) >= seconds


def _load(fake: Server, **body: Any) -> dict[str, Any]:
    return httpx.post(f"{fake.url}/_fake/live_load", json=body, timeout=900).json()  # type: ignore[no-any-return]


def run(sessions: int, figures: int, drifts: int, spends: int, window: float,
        out: Path) -> dict[str, Any]:  # fmt: skip
    _raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="tb-live-bench-"))
    bench = Bench(Plan(1, 1, 1, 1, 1, 1, 1, 1), workdir)
    bench.redis()
    policies = workdir / "policies.yaml"
    policies.write_text(POLICY)
    extra = {"upstream": {"url": "", "timeout": "30s", "connect_timeout": "10s",
                          "dialect": "openai"},
             "calls": {"lease": f"{LEASE:g}s", "renew_interval": "500ms"}}  # fmt: skip
    result: dict[str, Any] = {"sessions": sessions, "lease_seconds": LEASE, "machine": machine()}
    try:
        fake = bench.fake("fake")
        extra["upstream"]["url"] = fake.url + "/v1"
        first = bench.broker("broker-a", fake, policies, "live", "openai", extra)
        idle_rss = first.rss_kib()
        started = time.monotonic()
        _stage(f"opening {sessions} sessions")
        asyncio.run(_open_sessions(first, sessions))
        _stage("opened; waiting for their sidebands")
        result["open_seconds"] = round(time.monotonic() - started, 2)
        _wait(lambda: _summary(fake)["sidebands"] >= sessions, 120)
        rss = first.rss_kib()
        result["rss_idle_mib"] = round(idle_rss / 1024, 1)
        result["rss_with_sessions_mib"] = round(rss / 1024, 1)
        result["kib_per_session"] = round((rss - idle_rss) / sessions, 1)
        cpu_idle = first.cpu_seconds()
        time.sleep(window)  # the measurement window of idle CPU (leases, heartbeats)
        result["idle_cpu_percent"] = round((first.cpu_seconds() - cpu_idle) / window * 100, 1)

        stats, redis_cpu, cpu = (redis_stats(bench.redis_url), _redis_cpu(bench.redis_url),
                                 first.cpu_seconds())  # fmt: skip
        started = time.monotonic()
        _stage("usage figures")
        sent, chunk = 0, min(1000, figures)
        for _ in range(figures // chunk):  # closed loop: a chunk, then until it is counted
            sent += _load(fake, usage=chunk, step=1)["sent"]
            _wait(partial(_counted_at_least, bench.redis_url, sent), 120)  # a second each
        seconds = time.monotonic() - started
        after = redis_stats(bench.redis_url)
        result["usage"] = {
            "figures": sent, "figures_per_second": round(sent / seconds),
            "broker_cpu_us_per_figure": round((first.cpu_seconds() - cpu) / sent * 1e6, 1),
            "redis_commands_per_figure": round((sum(after.values()) - sum(stats.values()))
                                               / sent, 2),
            "redis_cpu_us_per_figure": round((_redis_cpu(bench.redis_url) - redis_cpu)
                                             / sent * 1e6, 1),
        }  # fmt: skip

        # real sessions report usage about once a minute: sessions/60 figures a second
        usage_every_ms = 60_000 / sessions
        _stage("drift")
        _load(fake, drift=drifts, every_ms=5, usage_every_ms=usage_every_ms)
        _wait(lambda: len(_summary(fake)["revert_seconds"]) >= drifts, 120)
        reverts = sorted(_summary(fake)["revert_seconds"])
        result["drift_to_revert_ms"] = {
            "drifts": len(reverts),
            "p50": round(statistics.median(reverts) * 1000, 2),
            "p99": round(reverts[min(len(reverts) - 1, int(len(reverts) * 0.99))] * 1000, 2),
            "max": round(reverts[-1] * 1000, 2),
            "usage_figures_per_second_meanwhile": round(1000 / usage_every_ms, 1),
        }  # fmt: skip

        # a spent budget: sessions of users with a 10 s budget told 11 s, one every 5 ms,
        # while the others' usage goes on; timed to the broker's session.close
        capped = asyncio.run(_open_sessions(first, spends, "capped"))
        _wait(lambda: _summary(fake)["sidebands"] >= sessions + spends, 60)
        _stage("spent budgets")
        _load(fake, spend=capped, seconds=11, every_ms=5)
        _wait(lambda: len(_summary(fake)["close_seconds"]) >= spends, 60)
        closes = sorted(_summary(fake)["close_seconds"])
        result["budget_to_close_ms"] = {
            "sessions": len(closes),
            "p50": round(statistics.median(closes) * 1000, 2),
            "p99": round(closes[min(len(closes) - 1, int(len(closes) * 0.99))] * 1000, 2),
            "max": round(closes[-1] * 1000, 2),
        }  # fmt: skip
        _wait(lambda: _summary(fake)["live"] <= sessions, 60)  # the closed ones are gone

        _stage("adoption")
        second = bench.broker("broker-b", fake, policies, "live", "openai", extra)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        killed = time.monotonic()
        _wait(lambda: _summary(fake)["reattached"] >= sessions, 180)  # (the live ones)
        result["adoption"] = {
            "seconds_after_kill": round(time.monotonic() - killed, 2),
            "adopted": int(_metric(second, "tokenbroker_call_adoptions_total")),
            "watched_twice": _summary(fake)["watched_twice"],
        }
    finally:
        bench.stop()  # the killed replica too (already reaped: its log is closed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "live_sessions.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="50 sessions, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sizes = (50, 500, 20, 10, 1.0) if args.smoke else (5000, 20_000, 500, 100, 10.0)
    result = run(*sizes, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
