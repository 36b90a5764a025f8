"""Models have a lifecycle: the broker reads the upstream's model list at start (and
every ``upstream.models_check_interval``) and warns about every model a live policy names
that shuts down within 30 days: a log line naming the policies, the metric the alert rule
reads (tests/test_manifests.py fires it), and `policy validate --config` prints it.

Against the fake upstream's ``GET /v1/models``, told which models shut down when."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, POLICIES, FakeUpstream, StartBroker, write_config
from live import metric
from servers import RedisServer, free_port, wait_until
from tokenbroker.upstream.models import ModelListUnavailable, parse_models, shutdown_of

DAY = 86_400
ADMIN = "admin-lifecycle-token"
LIFECYCLE = POLICIES / "lifecycle.yaml"


def in_days(days: int) -> int:
    """A shutdown_date ``days`` whole days after today (noon UTC, whatever the hour now)."""
    today = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)
    return int(dt.datetime(today.year, today.month, today.day, 12, tzinfo=dt.UTC).timestamp())


def test_shutdown_dates_as_the_upstream_may_write_them() -> None:
    assert shutdown_of(1_800_000_000) == dt.date(2027, 1, 15)
    assert shutdown_of("2027-01-19") == dt.date(2027, 1, 19)
    assert shutdown_of("2027-01-20T00:00:00Z") == dt.date(2027, 1, 20)
    unreadable: object
    for unreadable in (None, True, "soon", 1e30, [], {}):
        assert shutdown_of(unreadable) is None
    assert parse_models(b'{"data": [{"id": "m", "shutdown_date": "2027-01-19"}, {"x": 1}]}') == {
        "m": dt.date(2027, 1, 19)
    }
    for junk in (b"", b"[]", b'{"data": 3}', b"\xff"):
        with pytest.raises(ModelListUnavailable):
            parse_models(junk)


def test_a_model_ten_days_from_shutdown_is_warned_about(
    start_broker: StartBroker, upstream: FakeUpstream
) -> None:
    """Ten days out: a warning naming the policies, and the metric; a model 90 days out
    has the metric only; a model no policy names (and one with no date) has neither."""
    soon, far, unnamed = in_days(10), in_days(90), in_days(3)
    upstream.control(shutdowns={"gpt-realtime-2.1-mini": soon, "gpt-live-1.1": far,
                                "gpt-realtime-2": unnamed})  # fmt: skip
    broker = start_broker(LIFECYCLE, upstream={"dialect": "openai"})
    line = broker.process.wait_for(r'\{.*"model shuts down soon".*\}')
    warning = json.loads(line.group(0))
    assert warning["level"] in ("warning", "WARNING")
    assert warning["model"] == "gpt-realtime-2.1-mini"
    assert warning["days"] == 10
    assert warning["policies"] == ["basic"]
    assert warning["shutdown_date"] == (dt.datetime.now(dt.UTC).date()
                                        + dt.timedelta(days=10)).isoformat()  # fmt: skip
    name = "tokenbroker_model_days_to_shutdown"
    assert metric(broker, name, model="gpt-realtime-2.1-mini") == 10
    assert metric(broker, name, model="gpt-live-1.1") == 90
    assert 'gpt-realtime-2"' not in _metrics(broker.url)  # named by no policy
    assert 'model="gpt-realtime-2.1"' not in _metrics(broker.url)  # no shutdown date
    assert broker.output.count("model shuts down soon") == 1
    assert API_KEY not in broker.output


def model_list_reads(upstream: FakeUpstream) -> int:
    reads: int = httpx.get(f"{upstream.server.url}/_fake/requests").json()["model_list_reads"]
    return reads


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics").text


def test_the_check_runs_again_on_its_interval(
    start_broker: StartBroker, upstream: FakeUpstream
) -> None:
    """A shutdown announced after start is seen at the next check."""
    broker = start_broker(LIFECYCLE, upstream={"dialect": "openai",
                                               "models_check_interval": "1s"})  # fmt: skip
    upstream.control(shutdowns={"gpt-realtime-2.1": in_days(5)})
    wait_until(lambda: metric(broker, "tokenbroker_model_days_to_shutdown",
                              model="gpt-realtime-2.1") == 5, limit=10)  # fmt: skip
    line = broker.process.wait_for(r'"model shuts down soon".*"gpt-realtime-2.1"')
    assert line
    broker.stop()  # it reads every second: the next test counts reads


def test_a_policy_moved_off_the_model_clears_the_alert(
    start_broker: StartBroker, upstream: FakeUpstream
) -> None:
    """The metric follows a new policy version within seconds, from the list already
    read: the alert resolves once no policy names the model, without a new read."""
    upstream.control(shutdowns={"gpt-realtime-2.1-mini": in_days(8)})
    broker = start_broker(LIFECYCLE, env={"TOKENBROKER_ADMIN_TOKEN": ADMIN},
                          upstream={"dialect": "openai"})  # fmt: skip
    name = "tokenbroker_model_days_to_shutdown"
    wait_until(lambda: metric(broker, name, model="gpt-realtime-2.1-mini") == 8)
    reads = model_list_reads(upstream)
    moved = LIFECYCLE.read_text().replace("[gpt-realtime-2.1-mini, gpt-realtime-2.1]",
                                          "[gpt-realtime-2.1]")  # fmt: skip
    applied = httpx.post(f"{broker.url}/admin/policy", content=moved,
                         headers={"Authorization": f"Bearer {ADMIN}",
                                  "Content-Type": "application/yaml"})  # fmt: skip
    assert applied.status_code == 200, applied.text
    wait_until(lambda: 'model="gpt-realtime-2.1-mini"' not in _metrics(broker.url), limit=10)
    assert model_list_reads(upstream) == reads


def validate(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenbroker", "policy", "validate", str(LIFECYCLE),
         "--config", str(config), *extra],
        env={"OPENAI_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_policy_validate_prints_it(
    tmp_path: Path, upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    """With --config, validate reads the upstream's model list: a warning per model soon
    gone; an unreachable upstream is a note, and the file is still valid."""
    upstream.control(shutdowns={"gpt-4o-mini-transcribe": in_days(12)})
    config = write_config(tmp_path, redis_url=redis_server.url, upstream_url=upstream.url,
                          policy_file=LIFECYCLE, upstream={"dialect": "openai"})  # fmt: skip
    checked = validate(config)
    assert checked.returncode == 0, checked.stderr
    assert ("warning: model 'gpt-4o-mini-transcribe' (policies basic) shuts down on "
            f"{(dt.datetime.now(dt.UTC).date() + dt.timedelta(days=12)).isoformat()}, "
            "in 12 days") in checked.stderr  # fmt: skip
    assert "valid for dialect openai" in checked.stdout
    away = write_config(tmp_path, redis_url=redis_server.url,
                        upstream_url=f"http://127.0.0.1:{free_port()}/v1",
                        policy_file=LIFECYCLE, upstream={"dialect": "openai",
                                                         "connect_timeout": "200ms",
                                                         "timeout": "1s"})  # fmt: skip
    started = time.monotonic()
    offline = validate(away)
    assert offline.returncode == 0, offline.stderr
    assert "model list could not be read" in offline.stderr
    assert "warning:" not in offline.stderr
    assert time.monotonic() - started < 30
