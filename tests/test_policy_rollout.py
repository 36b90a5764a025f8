"""Policy versions on a live fleet: three brokers on one Redis follow applies within 1 s."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from conftest import POLICIES, StartBroker, make_token
from servers import RedisServer, TokenbrokerServer, wait_until

PREFIX = "fleet"


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenbroker", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def versions(fleet: list[TokenbrokerServer]) -> list[int]:
    return [httpx.get(b.url + "/readyz").json()["policy_version"] for b in fleet]


def seconds_until(condition: Callable[[], bool], limit: float = 5.0) -> float:
    """Time until ``condition`` holds (checked every 5 ms); fails after ``limit``."""
    return wait_until(condition, limit, pause=0.005)


@pytest.fixture(scope="module")
def fleet(start_broker: StartBroker, redis_server: RedisServer) -> list[TokenbrokerServer]:
    redis.Redis.from_url(redis_server.url).delete(
        *[f"{PREFIX}:{{policy}}:{k}" for k in ("seq", "current", "users", "users_rev")]
    )
    settings = {
        "redis": {"url": redis_server.url, "prefix": PREFIX},
        "policies": {"file": str(POLICIES / "integration.yaml"), "refresh_interval": "500ms"},
    }
    return [start_broker(**settings) for _ in range(3)]


@pytest.fixture(scope="module")
def cli_config(
    fleet: list[TokenbrokerServer],
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
) -> Path:
    path = tmp_path_factory.mktemp("cli") / "broker.yaml"
    path.write_text(
        json.dumps(
            {
                "redis": {"url": redis_server.url, "prefix": PREFIX},
                "auth": {
                    "providers": [
                        {
                            "issuer": "x",
                            "algorithms": ["HS256"],
                            "hs256_secret_env": "NOT_SET_IN_OPS_JOBS",
                        }
                    ]
                },
            }
        )
    )
    return path


def test_apply_and_rollback_reach_every_replica_within_a_second(
    fleet: list[TokenbrokerServer], cli_config: Path, tmp_path: Path
) -> None:
    """`policy apply` and `policy rollback` are served by all three brokers within 1 s."""
    start = versions(fleet)
    assert len(set(start)) == 1
    edited = (POLICIES / "integration.yaml").read_text().replace("[alloy, ash]", "[verse, ash]")
    new_file = tmp_path / "policies.yaml"
    new_file.write_text(edited)

    dry = run_cli(cli_config, "policy", "apply", str(new_file), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "-    voices: [alloy, ash]" in dry.stdout and "+    voices: [verse, ash]" in dry.stdout
    assert versions(fleet) == start

    applied = run_cli(cli_config, "policy", "apply", str(new_file))
    assert applied.returncode == 0, applied.stderr
    took = seconds_until(lambda: versions(fleet) == [start[0] + 1] * 3)
    print(f"\napply reached 3 replicas in {took * 1000:.0f} ms")
    assert took < 1.0
    token = make_token("fleet-user")
    for broker in fleet:
        reply = httpx.post(
            broker.url + "/v1/realtime/sessions",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status_code == 200

    rolled = run_cli(cli_config, "policy", "rollback", str(start[0]))
    assert rolled.returncode == 0, rolled.stderr
    took = seconds_until(lambda: versions(fleet) == [start[0] + 2] * 3)
    print(f"rollback reached 3 replicas in {took * 1000:.0f} ms")
    assert took < 1.0

    history = run_cli(cli_config, "policy", "history")
    assert f"* {start[0] + 2:>5}" in history.stdout
    assert f"rollback to {start[0]}" in history.stdout


def test_corrupt_document_is_ignored_by_every_replica(
    fleet: list[TokenbrokerServer], redis_server: RedisServer
) -> None:
    """A document written straight into Redis that fails validation is adopted by no one."""
    before = versions(fleet)
    client = redis.Redis.from_url(redis_server.url)
    bad = int(client.incr(f"{PREFIX}:{{policy}}:seq"))
    client.hset(
        f"{PREFIX}:{{policy}}:v:{bad}", mapping={"text": "policies: {p: {models: [gpt-9]}}"}
    )
    client.set(f"{PREFIX}:{{policy}}:current", bad)
    client.publish(f"{PREFIX}:{{policy}}:changed", "policy")
    for broker in fleet:
        broker.process.wait_for(rf"policy version {bad} is invalid; keeping version {before[0]}")
    assert versions(fleet) == before
    client.set(f"{PREFIX}:{{policy}}:current", before[0])


def test_invalid_file_is_refused_by_the_command(cli_config: Path) -> None:
    """`policy validate` and `policy apply` refuse an invalid file and name every error."""
    bad = POLICIES / "invalid" / "default_outside_range.yaml"
    validated = subprocess.run(
        [sys.executable, "-m", "tokenbroker", "policy", "validate", str(bad)],
        capture_output=True,
        text=True,
    )
    applied = run_cli(cli_config, "policy", "apply", str(bad))
    for result in (validated, applied):
        assert result.returncode == 1
        assert "policies.p.temperature.default: 1.1 is outside min..max (0.6..0.9)" in result.stderr
        assert "policies.p.max_response_output_tokens.default: 900" in result.stderr


def test_a_name_the_reference_does_not_list_gets_a_note(tmp_path: Path, cli_config: Path) -> None:
    """A valid file whose policies allow a model or voice the GA reference does not list (a
    typo, a newer model, a custom voice) passes `policy validate` and `policy apply` with a
    note naming it and the policies that allow it; Azure's deployment names get none, nor
    do listed names."""
    policies = tmp_path / "typo.yaml"
    policies.write_text(
        "default_policy: basic\npolicies:\n"
        "  basic: {models: [gpt-realtime-minni, gpt-realtime], voices: [marrin, cedar]}\n"
        "  other: {extends: basic}\n"
    )

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tokenbroker", "policy", "validate", str(policies), *extra]
        return subprocess.run(argv, capture_output=True, text=True, check=True)

    notes = [line for line in validate().stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2
    assert notes[0].startswith("note: model 'gpt-realtime-minni' (policies basic, other) ")
    assert notes[1].startswith("note: voice 'marrin' (policies basic, other) ")
    applied = run_cli(cli_config, "policy", "apply", "--dry-run", str(policies))  # GA dialect
    assert applied.returncode == 0, applied.stderr
    assert [line for line in applied.stderr.splitlines() if line.startswith("note:")] == notes
    assert "note:" not in validate("--dialect", "azure").stderr
    policies.write_text("default_policy: basic\npolicies:\n  basic: {models: [gpt-realtime]}\n")
    assert "note:" not in validate().stderr


def test_user_assignment_is_live_on_every_replica(
    fleet: list[TokenbrokerServer], cli_config: Path
) -> None:
    """`user assign` moves a user to another policy on all replicas; unassign moves them back."""
    token = make_token("assign-me")

    def policy_everywhere(code: int) -> bool:
        return all(
            httpx.post(
                b.url + "/v1/realtime/sessions",
                json={},
                headers={"Authorization": f"Bearer {token}"},
            ).status_code
            == code
            for b in fleet
        )

    assert policy_everywhere(200)
    assigned = run_cli(cli_config, "user", "assign", "assign-me", "suspended")
    assert assigned.returncode == 0, assigned.stderr
    assert json.loads(assigned.stdout)["policy"] == "suspended"
    assert seconds_until(lambda: policy_everywhere(403)) < 1.0
    assert run_cli(cli_config, "user", "unassign", "assign-me").returncode == 0
    assert seconds_until(lambda: policy_everywhere(200)) < 1.0
    unknown = run_cli(cli_config, "user", "assign", "assign-me", "no-such-policy")
    assert unknown.returncode == 1
    assert "No policy named 'no-such-policy'" in unknown.stderr


def test_user_show_and_reset(fleet: list[TokenbrokerServer], cli_config: Path) -> None:
    """`user show` reports the limit state; `user reset` gives the user a full bucket."""
    token = make_token("limited-user", plan="limited")
    for _ in range(3):
        httpx.post(
            fleet[0].url + "/v1/realtime/sessions",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert run_cli(cli_config, "user", "assign", "limited-user", "limited").returncode == 0
    shown = json.loads(run_cli(cli_config, "user", "show", "limited-user").stdout)
    assert shown["policy"] == "limited"
    assert shown["limits"][0]["remaining"] == 0
    reset = json.loads(run_cli(cli_config, "user", "reset", "limited-user").stdout)
    assert reset["limits"][0]["remaining"] == 3


def test_mint_path_makes_no_policy_lookup_in_redis(
    start_broker: StartBroker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Over 40 mints the broker sends one EVALSHA each and no policy read. The audit
    trail's batches (one script call each, off the reply path) are held back by a long
    flush interval, so every EVALSHA counted is a limiter charge."""
    own = RedisServer(tmp_path_factory.mktemp("redis-stats"))
    own.start()
    try:
        broker = start_broker(
            redis={"url": own.url},
            policies={"file": str(POLICIES / "integration.yaml"), "refresh_interval": "1h"},
            audit={"flush_interval": "1h"},
            calls={"renew_interval": "1h", "lease": "2h"},  # no live-call scan in the burst
        )
        client = redis.Redis.from_url(own.url)
        token = make_token("counted-user")

        def send() -> httpx.Response:
            return httpx.post(
                broker.url + "/v1/realtime/sessions",
                json={},
                headers={"Authorization": f"Bearer {token}"},
            )

        assert send().status_code == 200  # loads the script once
        client.config_resetstat()
        for _ in range(40):
            assert send().status_code == 200
        stats = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
        # commandstats also counts what the Lua script runs inside its one atomic call
        inside_script = {"time", "hget", "hset", "hdel", "pexpire", "config|resetstat", "info"}
        assert calls["evalsha"] == 40
        # HELLO and CLIENT SETINFO greet a pooled connection opened when two overlap
        handshake = {"hello", "client|setinfo"}
        assert set(calls) - inside_script - handshake <= {"evalsha"}
    finally:
        own.stop()


def test_a_store_that_lost_its_data_cannot_fool_a_replica(
    fleet: list[TokenbrokerServer], cli_config: Path, redis_server: RedisServer
) -> None:
    """Redis loses the policy keys (FLUSHALL, a restart without persistence); a new document
    applied then is numbered as an old one was, yet every replica adopts it: a version is
    identified by its number and its document's digest."""
    client = redis.Redis.from_url(redis_server.url)
    client.delete(*client.keys(f"{PREFIX}:*"))  # everything of this fleet, as FLUSHALL would
    applied = run_cli(cli_config, "policy", "apply", str(POLICIES / "limits.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert "applied as version 1" in applied.stdout
    current: Any = client.get(f"{PREFIX}:{{policy}}:current")
    digest = bytes(current).decode().split(":")[1]

    def everyone_holds_it() -> bool:
        return all(httpx.get(b.url + "/readyz").json()["policy_digest"] == digest for b in fleet)

    seconds_until(everyone_holds_it, 5.0)
    assert versions(fleet) == [1, 1, 1]
    for broker in fleet:  # and each serves it: the old one disabled "suspended", this one
        token = make_token(f"lost-{uuid.uuid4().hex[:6]}", plan="suspended")  # has no such plan
        reply = httpx.post(broker.url + "/v1/realtime/sessions", json={},
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert reply.status_code == 200, reply.text
    restored = run_cli(cli_config, "policy", "apply", str(POLICIES / "integration.yaml"))
    assert restored.returncode == 0, restored.stderr
