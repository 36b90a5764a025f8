"""The benchmark: the broker against a bare proxy (the floor), side by side in one run.

Starts redis-server, the fake upstream, the broker and the floor as separate processes
and drives them with wrk (a separate, efficient load generator) using many users'
pre-signed JWTs. Broker and floor alternate in rounds; medians are reported. Writes
``result.json`` and ``chart.png`` into ``--out`` and prints a table.

    python3 tests/bench/run.py              # the full run (about 7 minutes)
    python3 tests/bench/run.py --smoke      # seconds: checks that it works, not how fast
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from harness import (  # noqa: E402
    FULL,
    HERE,
    ORIGIN,
    SMOKE,
    Bench,
    Plan,
    machine,
    median,
    paired,
    policies_file,
    redis_stats,
)
from slow import slow_upstream  # noqa: E402

GA_BODY = '{"session":{"type":"realtime","audio":{"output":{"voice":"ash"}}}}'


def validator_cost() -> dict[str, float]:
    """In-process µs per request body checked against the schema data (seed and GA)."""
    from tokenbroker.families.realtime.request_ga import validate_client_secret_request
    from tokenbroker.families.realtime.session import validate_session
    from tokenbroker.infra.strict_json import parse_body

    seed, ga = parse_body(b'{"voice":"ash"}'), parse_body(GA_BODY.encode())
    rounds = 20_000

    def cost(check: Callable[[Any], Any], body: Any) -> float:
        return timeit.timeit(lambda: check(body), number=rounds) / rounds * 1e6

    return {"seed": cost(validate_session, seed), "ga": cost(validate_client_secret_request, ga)}


async def memory_per_user(redis_url: str, users: int) -> float:
    """Bytes of Redis memory per active user: the broker's limiter, one charge per user."""
    import redis.asyncio as aioredis

    from tokenbroker.limits.redis import RedisLimiter
    from tokenbroker.limits.rules import LimitRule

    client = aioredis.Redis.from_url(redis_url, max_connections=64)
    limiter = RedisLimiter(client, "mem")
    rules = [LimitRule(5, 60.0, 5, "1m"), LimitRule(100, 86400.0, 100, "1d")]
    await limiter.charge("warm-up", rules, [])
    before = int((await client.info("memory"))["used_memory"])
    for start in range(0, users, 50):
        await asyncio.gather(
            *(
                limiter.charge(f"mem-user-{i}", rules, [])
                for i in range(start, min(start + 50, users))
            )
        )
    after = int((await client.info("memory"))["used_memory"])
    await client.aclose()
    return (after - before) / users


def run(plan: Plan, out: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tokenbroker-bench-"))
    bench = Bench(plan, workdir)
    result: dict[str, Any] = {"plan": plan.__dict__, "machine": machine()}
    try:
        bench.redis()
        fast = bench.fake("fake-upstream")
        one = policies_file(workdir / "one.yaml", 1, 0)
        broker = bench.broker("broker", fast, one, "b1")
        floor = bench.floor("floor", fast)
        tokens = bench.tokens("users", [f"user-{i}" for i in range(plan.users)])
        # The measured path is a browser's: one request as wrk sends it gets CORS back.
        # The fake keeps that one request: what the broker sends upstream is what wrk
        # sends the floor, so the upstream does the same work for both (its check of
        # the policy's fields is CPU a real upstream spends on its own machines).
        control = fast.url + "/_fake/control"
        httpx.post(control, json={"record": True, "reset": True}).raise_for_status()
        first = httpx.post(
            broker.url + "/v1/realtime/sessions",
            content=b'{"voice":"ash"}',
            headers={"Content-Type": "application/json", "Origin": ORIGIN,
                     "Authorization": "Bearer " + tokens.read_text().split()[0]},
        )  # fmt: skip
        assert first.headers.get("access-control-allow-origin") == ORIGIN, first.headers
        (sent,) = httpx.get(fast.url + "/_fake/requests").json()["requests"]
        httpx.post(control, json={"record": False, "reset": True}).raise_for_status()
        floor.request = {"MINT_BODY": sent["body"]}
        result["floor_body"] = sent["body"]

        saturation: dict[str, list[float]] = {"broker": [], "floor": []}
        cpu: dict[str, list[float]] = {"broker": [], "floor": []}
        single: dict[str, list[dict[str, Any]]] = {"broker": [], "floor": []}
        pair = [("broker", broker), ("floor", floor)]
        for i in range(plan.rounds):  # broker-floor, floor-broker, ...: drift favours neither
            for name, target in pair if i % 2 == 0 else pair[::-1]:
                rps, cpu_us = bench.loaded(target, tokens)
                saturation[name].append(rps)
                cpu[name].append(cpu_us)
                single[name].append(bench.wrk(target, tokens, 1, plan.seconds))
        lat = {
            name: {p: median([r[f"{p}_ms"] for r in single[name]]) for p in ("p50", "p90", "p99")}
            for name in single
        }
        result["saturation_rps"] = {k: median(v) for k, v in saturation.items()}
        result["saturation_rounds_rps"] = saturation
        # CPU time of the server process per request at saturation: steadier than rates
        # on a shared machine, and it says where the difference comes from.
        result["cpu_us_per_request"] = {k: median(v) for k, v in cpu.items()}
        # Comparisons are paired: each round measures broker and floor back to back, so
        # the median of the per-round ratios (differences) cancels the machine's drift.
        result["throughput_ratio"] = paired(saturation["broker"], saturation["floor"], ratio=True)
        result["latency_one_connection_ms"] = lat
        result["added_latency_ms"] = {
            p: paired([r[f"{p}_ms"] for r in single["broker"]],
                      [r[f"{p}_ms"] for r in single["floor"]], ratio=False)
            for p in ("p50", "p99")
        }  # fmt: skip

        # The limiter's script calls TIME once per call and the audit's script never, so
        # TIME counts limiter round trips. One connection: mints one after another, none
        # shares a call, so this is the number of round trips a mint waits for before its
        # upstream call. Sixteen connections: mints of one loop turn share one call.
        def redis_calls(connections: int) -> tuple[dict[str, int], int]:
            before = redis_stats(bench.redis_url)
            counted = bench.wrk(broker, tokens, connections, plan.seconds)
            after = redis_stats(bench.redis_url)
            return {k: after.get(k, 0) - before.get(k, 0) for k in after}, counted["requests"]

        alone, alone_mints = redis_calls(1)
        calls, mints = redis_calls(16)
        limiter_calls = calls.get("time", 0)
        result["redis_per_mint"] = {
            "round_trips_before_upstream": round(alone.get("time", 0) / alone_mints, 3),
            "limiter_calls_per_mint_16_connections": round(limiter_calls / mints, 3),
            "commands_in_that_round_trip": round(
                sum(calls.get(k, 0) for k in ("time", "hget", "hset", "hdel", "pexpire")) / mints, 2
            ),
            "audit_xadd_after_reply": round(calls.get("xadd", 0) / mints, 3),
            "audit_calls_per_mint": round((calls.get("evalsha", 0) - limiter_calls) / mints, 4),
        }
        result["redis_bytes_per_user"] = round(
            asyncio.run(memory_per_user(bench.redis_url, plan.memory_users)), 1
        )

        many = policies_file(workdir / "many.yaml", plan.many_policies, plan.many_assignments)
        broker_many = bench.broker("broker-many", fast, many, "b2")
        assigned = bench.tokens("assigned", [f"assigned-{i}" for i in range(plan.users)])
        # Both brokers under load at the same time, each by its own wrk: whatever the
        # machine does during a round, it does to both, so the per-round ratio is the
        # difference in cost per mint, not the VM's drift between two runs (which moved
        # sequential pairs by up to ±30 % here). Equal costs get equal CPU shares.
        runs: dict[str, list[tuple[float, float]]] = {"one": [], "many": []}
        # Not measured: every token verified once (then cached) by both, the new broker's
        # code and data warmed up.
        bench.wrk_together([(broker, assigned), (broker_many, assigned)], 32, plan.seconds)
        for _ in range(plan.rounds):
            one_run, many_run = bench.loaded_together(
                [(broker, assigned), (broker_many, assigned)], 32, plan.seconds
            )
            runs["one"].append(one_run)
            runs["many"].append(many_run)
        one_rps, many_rps = ([rps for rps, _ in runs[k]] for k in ("one", "many"))
        one_cpu, many_cpu = ([cpu for _, cpu in runs[k]] for k in ("one", "many"))
        result["policies"] = {
            "method": "both brokers loaded at once (32 connections each), per-round ratio",
            "rounds_rps": {"one": one_rps, "many": many_rps},
            "cpu_us_per_request": {"one": median(one_cpu), "many": median(many_cpu)},
            "one_policy_rps": median(one_rps),
            f"{plan.many_policies}_policies_{plan.many_assignments}_users_rps": median(many_rps),
            "ratio": paired(many_rps, one_rps, ratio=True),
            # The same question asked of each process's own work, CPU per mint (one /
            # many: above 1 would mean many costs less).
            "cpu_ratio": paired(one_cpu, many_cpu, ratio=True),
        }
        broker_many.stop()
        bench.servers.remove(broker_many)

        # The GA path (the GA endpoint, GA upstream dialect, GA request validated against
        # the schema data) against the beta path, both loaded at once, paired by round.
        broker_ga = bench.broker("broker-ga", fast, one, "b4", dialect="openai")
        broker_ga.request = {"MINT_PATH": "/v1/realtime/client_secrets", "MINT_BODY": GA_BODY}
        pair_ga = [(broker, tokens), (broker_ga, tokens)]
        # Warm-up, not measured: twice, so the new broker has verified (and cached) every
        # user's token, as the beta broker has by now.
        for _ in range(2):
            bench.wrk_together(pair_ga, 32, plan.seconds)
        ga_runs: dict[str, list[tuple[float, float]]] = {"beta": [], "ga": []}
        for i in range(plan.rounds):
            order = pair_ga if i % 2 == 0 else pair_ga[::-1]
            measured = dict(
                zip(
                    ("beta", "ga") if i % 2 == 0 else ("ga", "beta"),
                    bench.loaded_together(order, 32, plan.seconds),
                    strict=True,
                )
            )
            for key in ga_runs:
                ga_runs[key].append(measured[key])
        beta_rps, ga_rps = ([r for r, _ in ga_runs[k]] for k in ("beta", "ga"))
        beta_cpu, ga_cpu = ([c for _, c in ga_runs[k]] for k in ("beta", "ga"))
        result["validator_us"] = validator_cost()
        result["ga_path"] = {
            "method": "GA endpoint + GA dialect vs seed endpoint + beta dialect, loaded at once",
            "rps": {"beta": median(beta_rps), "ga": median(ga_rps)},
            "cpu_us_per_request": {"beta": median(beta_cpu), "ga": median(ga_cpu)},
            "cpu_ratio": paired(ga_cpu, beta_cpu, ratio=True),
        }
        broker_ga.stop()
        bench.servers.remove(broker_ga)

        result["slow_upstream"] = slow_upstream(bench, plan, tokens, one, floor.request)

        rss_start = broker.rss_kib()
        soak = bench.wrk(broker, tokens, 16, plan.soak_seconds)
        rss_end = broker.rss_kib()
        result["soak"] = {
            "seconds": plan.soak_seconds,
            "requests": soak["requests"],
            "errors": soak["non2xx"] + soak["socket_errors"],
            "rss_start_kib": rss_start,
            "rss_end_kib": rss_end,
            "rss_growth": round(rss_end / rss_start - 1, 3),
        }
    finally:
        bench.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out / "chart.png")
    return result


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = ["saturation (64 conn.)", "250 ms upstream"]
    broker = [result["saturation_rps"]["broker"], result["slow_upstream"]["broker_rps"]]
    floor = [result["saturation_rps"]["floor"], result["slow_upstream"]["floor_rps"]]
    x = range(len(groups))
    left.bar([i - 0.2 for i in x], floor, 0.4, label="floor (bare proxy)", color="#9aa5b1")
    left.bar([i + 0.2 for i in x], broker, 0.4, label="tokenbroker", color="#2f6fdf")
    left.set_xticks(list(x), groups)
    left.set_ylabel("mints / s")
    left.set_title("Throughput, one worker each")
    left.legend()
    percentiles = ["p50", "p90", "p99"]
    lat = result["latency_one_connection_ms"]
    right.plot(
        percentiles, [lat["floor"][p] for p in percentiles], "o-", color="#9aa5b1", label="floor"
    )
    right.plot(
        percentiles,
        [lat["broker"][p] for p in percentiles],
        "o-",
        color="#2f6fdf",
        label="tokenbroker",
    )
    right.set_ylabel("ms")
    right.set_title("Latency, one connection")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(result: dict[str, Any]) -> str:
    sat, lat, added = (
        result["saturation_rps"],
        result["latency_one_connection_ms"],
        result["added_latency_ms"],
    )
    slow, soak, pol = result["slow_upstream"], result["soak"], result["policies"]
    ga = result["ga_path"]
    many_key = next(k for k in pol if k.endswith("_users_rps"))
    rows = [
        (
            "throughput, 64 conn. (mints/s)",
            f"broker {sat['broker']:.0f} / floor {sat['floor']:.0f}"
            f" = {result['throughput_ratio']:.2f}",
            "≥ 0.85",
        ),
        (
            "server CPU per mint, 64 conn.",
            f"broker {result['cpu_us_per_request']['broker']:.0f} µs / "
            f"floor {result['cpu_us_per_request']['floor']:.0f} µs",
            "(diagnostic)",
        ),
        (
            "added latency, 1 conn. p50 / p99",
            f"{added['p50']:.2f} / {added['p99']:.2f} ms "
            f"(broker {lat['broker']['p50']:.2f} / {lat['broker']['p99']:.2f})",
            "≤ 1 / ≤ 3 ms",
        ),
        (
            "Redis round trips before upstream",
            f"{result['redis_per_mint']['round_trips_before_upstream']} "
            f"({result['redis_per_mint']['limiter_calls_per_mint_16_connections']} "
            "script calls per mint at 16 conn.)",
            "1",
        ),
        ("Redis memory per active user", f"{result['redis_bytes_per_user']:.0f} B", "≤ 200 B"),
        (
            "1 policy vs many (mints/s)",
            f"{pol['one_policy_rps']:.0f} vs {pol[many_key]:.0f} = {pol['ratio']:.2f} "
            f"(CPU {pol['cpu_us_per_request']['one']:.0f} vs "
            f"{pol['cpu_us_per_request']['many']:.0f} µs = {pol['cpu_ratio']:.2f})",
            "≥ 0.95",
        ),
        (
            "GA path vs beta path (CPU per mint)",
            f"{ga['cpu_us_per_request']['ga']:.0f} vs {ga['cpu_us_per_request']['beta']:.0f} µs"
            f" = {ga['cpu_ratio']:.2f} ({ga['rps']['ga']:.0f} vs {ga['rps']['beta']:.0f}/s)",
            "≤ 1.10",
        ),
        (
            "request check per body (in-process)",
            f"seed {result['validator_us']['seed']:.1f} µs, "
            f"GA {result['validator_us']['ga']:.1f} µs",
            "(diagnostic)",
        ),
        (
            f"{slow['concurrency']} concurrent, 250 ms upstream",
            f"{slow['broker_rps']:.0f}/s (floor {slow['floor_rps']:.0f}, ideal "
            f"{slow['ideal_rps']:.0f}) = {slow['broker_vs_reference']:.2f}, "
            f"{slow['broker_errors']} errors",
            "0 errors, ≥ 0.90",
        ),
        (
            "  whole machine's CPU per request there",
            " / ".join(
                f"{name} {cpu['machine']:.0f} µs (server {cpu['server']:.0f}, upstream "
                f"{cpu['upstream']:.0f}, Redis {cpu['redis']:.0f}, wrk {cpu['load']:.0f})"
                for name, cpu in slow["cpu_us_per_request"].items()
            )
            + f"; floor/broker {slow['machine_cpu_ratio']:.2f}, cores idle "
            f"{slow['idle_share']['broker']:.0%} / {slow['idle_share']['floor']:.0%}",
            "(diagnostic)",
        ),
        (
            f"RSS over a {soak['seconds']} s soak",
            f"{soak['rss_start_kib'] / 1024:.1f} → "
            f"{soak['rss_end_kib'] / 1024:.1f} MiB ({soak['rss_growth']:+.1%})",
            "< +10 %",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(
        f"{name:<{width}}  {value}   [target {target}]" for name, value, target in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(SMOKE if args.smoke else FULL, args.out)
    print(table(result))
    print(f"\nwrote {args.out / 'result.json'} and {args.out / 'chart.png'}")


if __name__ == "__main__":
    main()
