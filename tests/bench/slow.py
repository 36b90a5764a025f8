"""The benchmark's slow-upstream case: broker and floor at many connections (1 000 in the
full plan) against an upstream that answers in 250 ms, with where each request's CPU goes.

Both servers are warmed (every connection, their upstream connections, the broker's token
cache), then loaded in alternating rounds, the ratio paired per round. Each round also
takes the whole machine's CPU per request, split by process: the server under load (all
its threads), the fake upstream, Redis and wrk; and the share of the cores left idle. On a
machine whose cores every process shares, the rate follows that whole-machine figure (see
"The 1 000-concurrent case" in docs/performance.md); the split says which process the
broker's extra goes to.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

from harness import Bench, Plan, Server, cpu_seconds, median, paired

LATENCY_S = 0.25
PARTS = ("server", "upstream", "redis", "load")


def _children_cpu() -> float:
    """CPU time of this process's children that have ended (each round's wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Round:
    """One wrk run against ``target`` with the CPU every process of the machine spent."""

    def __init__(self, bench: Bench, target: Server, upstream: Server, redis_pid: int) -> None:
        self._clocks = {
            "server": target.cpu_seconds,
            "upstream": upstream.cpu_seconds,
            "redis": lambda: cpu_seconds(redis_pid),
            "load": _children_cpu,
        }
        self._bench, self._target = bench, target

    def run(self, tokens: Path, connections: int, seconds: int) -> dict[str, Any]:
        before = {part: clock() for part, clock in self._clocks.items()}
        started = time.monotonic()
        got = self._bench.wrk(self._target, tokens, connections, seconds)
        wall = time.monotonic() - started
        used = {part: clock() - before[part] for part, clock in self._clocks.items()}
        requests = max(got["requests"], 1)
        got["cpu_us"] = {part: used[part] / requests * 1e6 for part in PARTS}
        got["cpu_us"]["machine"] = sum(used.values()) / requests * 1e6
        got["idle_share"] = max(0.0, 1 - sum(used.values()) / (wall * (os.cpu_count() or 1)))
        return got


def slow_upstream(
    bench: Bench, plan: Plan, tokens: Path, policies: Path, floor_request: dict[str, str]
) -> dict[str, Any]:
    """The case's figures for result.json (``slow_upstream``)."""
    upstream = bench.fake("slow-upstream", latency_ms=int(LATENCY_S * 1000))
    broker = bench.broker("broker-slow", upstream, policies, "b3")
    floor = bench.floor("floor-slow", upstream)
    floor.request = floor_request
    assert bench.store.process is not None
    redis_pid = bench.store.process.proc.pid
    targets = {"broker": broker, "floor": floor}
    rounds = {name: Round(bench, server, upstream, redis_pid) for name, server in targets.items()}
    for target in targets.values():  # warm-up, not measured
        bench.wrk(target, tokens, plan.slow_concurrency, plan.seconds)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for i in range(plan.rounds):
        for name in list(targets)[:: 1 if i % 2 == 0 else -1]:
            runs[name].append(rounds[name].run(tokens, plan.slow_concurrency, plan.seconds))
    rps = {name: [got["rps"] for got in got_runs] for name, got_runs in runs.items()}
    machine = {name: [got["cpu_us"]["machine"] for got in runs[name]] for name in targets}
    ideal = plan.slow_concurrency / LATENCY_S
    broker_runs = runs["broker"]
    return {
        "concurrency": plan.slow_concurrency,
        "ideal_rps": ideal,
        "broker_rps": median(rps["broker"]),
        "floor_rps": median(rps["floor"]),
        "rounds_rps": rps,
        "broker_errors": sum(r["non2xx"] + r["socket_errors"] for r in broker_runs),
        "broker_non2xx": sum(r["non2xx"] for r in broker_runs),
        "client_socket_errors": {
            k: sum(r[k] for r in broker_runs)
            for k in ("socket_errors", "connect_errors", "timeouts")
        },
        "broker_vs_reference": paired(
            rps["broker"], [min(ideal, f) for f in rps["floor"]], ratio=True
        ),
        "cpu_us_per_request": {
            name: {
                part: median([got["cpu_us"][part] for got in runs[name]])
                for part in (*PARTS, "machine")
            }
            for name in targets
        },
        "idle_share": {name: median([got["idle_share"] for got in runs[name]]) for name in targets},
        "rounds_machine_us": machine,
        "broker_extra_machine_us": paired(machine["broker"], machine["floor"], ratio=False),
        "machine_cpu_ratio": paired(machine["floor"], machine["broker"], ratio=True),
    }
