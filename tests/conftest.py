"""Shared fixtures: a real redis-server, the fake upstream and broker processes on loopback,
and a real Chromium (Playwright) whose failed pages leave a screenshot."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from browser import CHROMIUM_ARGS, chromium
from servers import RedisServer, TokenbrokerServer
from tokenbroker.dev.tokens import sign_token

JWT_SECRET = "test-hs256-secret-CANARY-0123456789abcdef"
API_KEY = "sk-test-CANARY-upstream-key-7f3e9a"
ISSUER = "https://issuer.test"
AUDIENCE = "tokenbroker"
POLICIES = Path(__file__).parent / "policies"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


def make_token(sub: str, *, secret: str = JWT_SECRET, ttl: int = 600, **claims: Any) -> str:
    return sign_token(secret, issuer=ISSUER, audience=AUDIENCE, sub=sub, claims=claims, ttl=ttl)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@dataclass
class FakeUpstream:
    server: TokenbrokerServer

    @property
    def url(self) -> str:
        return f"{self.server.url}/v1"

    def control(self, **settings: Any) -> None:
        httpx.post(f"{self.server.url}/_fake/control", json=settings).raise_for_status()

    def received(self) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.server.url}/_fake/requests").json()
        requests: list[dict[str, Any]] = reply["requests"]
        return requests


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[TokenbrokerServer]:
    server = TokenbrokerServer(["fake-upstream", "--port", "0", "--api-key", API_KEY])
    yield server
    server.stop()


@pytest.fixture
def upstream(fake_upstream_server: TokenbrokerServer) -> FakeUpstream:
    """The shared fake upstream, reset to healthy with an empty request log."""
    fake = FakeUpstream(fake_upstream_server)
    fake.control(latency_ms=0, fail_rate=0, faults=[], reset=True, record=True, shutdowns={})
    return fake


def write_config(
    directory: Path, *, redis_url: str, upstream_url: str, policy_file: Path, **overrides: Any
) -> Path:
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        # the beta dialect unless a test says otherwise: the older tests read beta bodies
        "upstream": {
            "url": upstream_url,
            "dialect": "openai-beta",
            "connect_timeout": "1s",
            "timeout": "2s",
        },
        "redis": {"url": redis_url, "prefix": f"t{uuid.uuid4().hex[:8]}"},
        "policies": {"file": str(policy_file), "refresh_interval": "100ms"},
        "auth": {
            "providers": [
                {
                    "name": "test",
                    "issuer": ISSUER,
                    "audiences": [AUDIENCE],
                    "algorithms": ["HS256"],
                    "hs256_secret_env": "TEST_JWT_SECRET",
                }
            ]
        },
        "cors": {"allowed_origins": ["https://app.example"]},
        "shutdown": {"delay": "10ms", "grace": "5s"},
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = directory / f"broker-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


BROKER_ENV = {"TEST_JWT_SECRET": JWT_SECRET, "OPENAI_API_KEY": API_KEY}
StartBroker = Callable[..., TokenbrokerServer]


@pytest.fixture(scope="module")
def start_broker(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    fake_upstream_server: TokenbrokerServer,
) -> Iterator[StartBroker]:
    """Start broker processes (stopped at the end of the module)."""
    started: list[TokenbrokerServer] = []
    directory = tmp_path_factory.mktemp("broker")

    def start(
        policy_file: Path = POLICIES / "integration.yaml",
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> TokenbrokerServer:
        overrides.setdefault("redis", {"url": redis_server.url})
        config = write_config(
            directory,
            redis_url=redis_server.url,
            upstream_url=f"{fake_upstream_server.url}/v1",
            policy_file=policy_file,
            **overrides,
        )
        server = TokenbrokerServer(
            ["serve", "--config", str(config)], {**BROKER_ENV, **(env or {})}
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item (browser tests screenshot failed pages)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chrome(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(chrome: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = chrome.new_context()
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()
