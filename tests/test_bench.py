"""The benchmark in smoke mode: it runs end to end and writes its JSON and chart.
(How fast is the benchmark's business, not the test suite's.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent / "bench" / "run.py"


def test_benchmark_smoke_run_writes_result_and_chart(tmp_path: Path) -> None:
    """`run.py --smoke` measures every figure and writes result.json and chart.png."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    for key in (
        "throughput_ratio",
        "added_latency_ms",
        "redis_per_mint",
        "redis_bytes_per_user",
        "policies",
        "slow_upstream",
        "soak",
    ):
        assert key in result
    assert result["slow_upstream"]["broker_errors"] == 0
    assert len(result["slow_upstream"]["rounds_rps"]["floor"]) == 1  # the smoke plan's rounds
    # each round's whole-machine CPU per request, split by process (the server, the
    # upstream, Redis, wrk), the parts adding up to the whole
    for name, cpu in result["slow_upstream"]["cpu_us_per_request"].items():
        assert cpu["server"] > 0 and cpu["upstream"] > 0 and cpu["load"] > 0, (name, cpu)
        parts = cpu["server"] + cpu["upstream"] + cpu["redis"] + cpu["load"]
        assert abs(cpu["machine"] - parts) < 0.01 * parts + 1, (name, cpu)
    # the figures name the interpreter they were taken on (its build moves them ~16 %)
    assert result["machine"]["python"] == os.path.realpath(sys.executable)
    assert 0.9 < result["redis_per_mint"]["round_trips_before_upstream"] < 1.2
    # the floor is sent what the broker sent upstream (the policy's model added to the
    # browser's body), so the fake upstream checks the same body for both
    sent = json.loads(result["floor_body"])
    assert (sent["voice"], sent["model"]) == ("ash", "gpt-4o-mini-realtime-preview")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Redis memory per active user" in done.stdout
    assert "whole machine's CPU per request there" in done.stdout


def test_live_call_benchmark_smoke_run(tmp_path: Path) -> None:
    """`calls.py --smoke`: calls held, usage accounted, a killed replica's calls adopted."""
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "calls.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "calls.json").read_text())
    assert result["adoption"]["adopted"] == result["calls"] == 50
    assert result["usage"]["redis_evalsha_per_event"] >= 1


def test_live_session_benchmark_smoke_run(tmp_path: Path) -> None:
    """`gpt_live.py --smoke`: GPT-Live creation through the broker and a bare relay, paired, the
    relay sent the body the broker sent upstream."""
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "gpt_live.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "live.json").read_text())
    assert len(result["p50_ms"]["broker"]) == len(result["p50_ms"]["relay"]) == 2
    sent = json.loads(result["relay_body"])["session"]
    assert sent["instructions"] == "You are the support line."
    assert sent["client"]["data_channel"]["allowed_client_events"]
    assert "broker adds" in done.stdout


def test_live_session_load_benchmark_smoke_run(tmp_path: Path) -> None:
    """`live_sessions.py --smoke`: GPT-Live sessions held, usage figures accounted, drift
    reverted and spent budgets closed (both timed), a killed replica's sessions adopted,
    none watched twice."""
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "live_sessions.py"), "--smoke", "--out",
         str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "live_sessions.json").read_text())
    assert result["adoption"]["adopted"] == result["sessions"] == 50
    assert result["adoption"]["watched_twice"] == 0
    assert result["drift_to_revert_ms"]["drifts"] == 20
    assert result["budget_to_close_ms"]["sessions"] == 10
    assert result["usage"]["figures"] == 500
