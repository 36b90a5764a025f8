"""GPT-Live session creation through the broker against a bare relay, paired.

One request at a time (the added latency a user sees), alternating broker and relay in
rounds: the broker authenticates, applies the policy's ``live`` section, charges Redis
and holds the user's place before posting upstream; the relay forwards the same body to
the same fake upstream with the key. The relay is sent what the broker sent upstream, so
the fake upstream checks the same body for both. Writes ``live.json`` into ``--out``.

    python3 tests/bench/gpt_live.py              # the full run (about a minute)
    python3 tests/bench/gpt_live.py --smoke      # seconds: checks that it works, not how fast
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from harness import FULL, SMOKE, Bench, machine, paired  # noqa: E402

OFFER = "\r\n".join(["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
                     "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", ""])  # fmt: skip
POLICY = {
    "default_policy": "bench",
    "policies": {"bench": {
        "models": ["gpt-realtime"],
        "limits": [{"limit": 1_000_000, "per": "1s"}],
        "calls": {"max_live_calls": 1_000_000},
        "live": {"models": ["gpt-live-1.1"], "voices": ["marin"],
                 "instructions": {"mode": "fixed", "text": "You are the support line."},
                 "idle_timeout_s": {"max": 60, "default": 20}},
    }},
}  # fmt: skip


def timed(client: httpx.Client, url: str, body: bytes, token: str | None) -> float:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    reply = client.post(url + "/v1/live/sessions", content=body, headers=headers)
    took = time.perf_counter() - started
    assert reply.status_code == 201, reply.text
    return took * 1000


def run(smoke: bool, out: Path) -> dict[str, Any]:
    plan = SMOKE if smoke else FULL
    per_round, rounds = (20, 2) if smoke else (300, plan.rounds * 2)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench = Bench(plan, workdir)
        try:
            bench.redis()
            fake = bench.fake("fake-live")
            policies = workdir / "live-policies.yaml"
            policies.write_text(yaml.safe_dump(POLICY))
            broker = bench.broker("broker-live", fake, policies, "benchlive", dialect="openai")
            relay = bench.floor("relay-live", fake)
            token = bench.tokens("live", ["live-user"]).read_text().strip()
            browser = json.dumps({"session": {}, "transport": {"type": "webrtc",
                                                               "sdp": OFFER}}).encode()  # fmt: skip
            with httpx.Client(timeout=10) as client:
                timed(client, broker.url, browser, token)  # warm both
                sent = httpx.post(fake.url + "/_fake/control", json={"record": True})
                sent.raise_for_status()
                timed(client, broker.url, browser, token)
                upstream_body = httpx.get(fake.url + "/_fake/requests").json()["requests"][-1]
                httpx.post(fake.url + "/_fake/control", json={"record": False, "reset": True})
                floor_body = upstream_body["body"].encode()
                timed(client, relay.url, floor_body, None)
                p50s: dict[str, list[float]] = {"broker": [], "relay": []}
                p99s: dict[str, list[float]] = {"broker": [], "relay": []}
                targets = (("broker", broker, browser, token), ("relay", relay, floor_body, None))
                for _ in range(rounds):
                    for name, target, body, tok in targets:
                        times = sorted(timed(client, target.url, body, tok)
                                       for _ in range(per_round))  # fmt: skip
                        p50s[name].append(statistics.median(times))
                        p99s[name].append(times[min(len(times) - 1, int(len(times) * 0.99))])
        finally:
            bench.stop()
    result = {
        "machine": machine(), "requests_per_round": per_round, "rounds": rounds,
        "p50_ms": {k: [round(v, 3) for v in vs] for k, vs in p50s.items()},
        "p99_ms": {k: [round(v, 3) for v in vs] for k, vs in p99s.items()},
        "added_p50_ms": paired(p50s["broker"], p50s["relay"], ratio=False),
        "added_p99_ms": paired(p99s["broker"], p99s["relay"], ratio=False),
        "relay_body": floor_body.decode(),
    }  # fmt: skip
    (out / "live.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    result = run(args.smoke, args.out)
    print(f"GPT-Live creation, one at a time: broker adds {result['added_p50_ms']} ms at p50, "
          f"{result['added_p99_ms']} ms at p99 over a bare relay (median of "
          f"{result['rounds']} paired rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
