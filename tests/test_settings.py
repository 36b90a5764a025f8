"""Settings: every invalid case refused with its path before start; the environment
read in one place; the docs' settings table generated from the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenbroker.config.load import SettingsError, settings_from_dict
from tokenbroker.config.reference import BEGIN, END, table

HERE = Path(__file__).parent
INVALID = sorted((HERE / "settings" / "invalid").glob("*.yaml"))
CONFIGURATION = HERE.parent / "docs" / "configuration.md"
PROVIDER = {"issuer": "https://issuer.test", "audiences": ["tb"], "algorithms": ["HS256"],
            "hs256_secret_env": "SECRET"}  # fmt: skip
ENV = {"SECRET": "s" * 40}


def with_provider(doc: dict[str, Any]) -> dict[str, Any]:
    auth: dict[str, Any] = doc["auth"] if isinstance(doc.get("auth"), dict) else {}
    return {**doc, "auth": {"providers": [PROVIDER], **auth}}


def expected_errors(path: Path) -> list[str]:
    prefix = "# expect: "
    lines = path.read_text().splitlines()
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_settings_are_refused_with_their_path(path: Path) -> None:
    """Each invalid file is refused whole, every problem named by its path."""
    with pytest.raises(SettingsError) as caught:
        settings_from_dict(with_provider(yaml.safe_load(path.read_text())), ENV, path.parent)
    assert caught.value.errors == sorted(expected_errors(path))


def test_serve_refuses_an_invalid_config_before_it_starts(tmp_path: Path) -> None:
    """`tokenbroker serve` exits non-zero naming the path; nothing listens."""
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump(with_provider({"server": {"port": 70000}})))
    done = subprocess.run(
        [sys.executable, "-m", "tokenbroker", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={"SECRET": "s" * 40},
    )  # fmt: skip
    assert done.returncode != 0
    assert "server.port: must be at most 65535" in done.stderr


def test_defaults_and_environment() -> None:
    """Defaults come from the models; REDIS_URL, REDIS_CLUSTER, the proxies and the
    secrets come from the environment only, and secrets never show in a repr."""
    env = {**ENV, "OPENAI_API_KEY": "sk-CANARY", "REDIS_URL": "redis://other:6380/1",
           "REDIS_CLUSTER": "true", "HTTPS_PROXY": "http://proxy:3128",
           "TOKENBROKER_ADMIN_TOKEN": "admin-CANARY"}  # fmt: skip
    settings = settings_from_dict(with_provider({}), env)
    assert settings.upstream.url == "https://api.openai.com/v1"
    assert settings.upstream.timeout == 10.0 and settings.policies.refresh_interval == 0.5
    assert settings.redis.url == "redis://other:6380/1" and settings.redis.cluster
    assert settings.upstream.proxy == "http://proxy:3128"
    assert settings.upstream.api_key == "sk-CANARY" and settings.admin_token == "admin-CANARY"
    assert settings.auth.providers[0].hs256_secret == "s" * 40
    assert "CANARY" not in repr(settings) and "s" * 40 not in repr(settings)
    bypass = settings_from_dict(
        with_provider({"upstream": {"url": "http://127.0.0.1:9/v1"}}),
        {**env, "HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "127.0.0.1"},
    )
    assert bypass.upstream.proxy is None


def test_only_the_loader_reads_the_environment() -> None:
    """No module of the package but the settings loader touches os.environ or getenv."""
    package = HERE.parent / "service" / "tokenbroker"
    readers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(word in path.read_text() for word in ("os.environ", "getenv", "getproxies"))
    )
    assert readers == ["config/load.py"]


def test_docs_table_is_generated_from_the_models() -> None:
    """The configuration page's settings table is exactly what the models say."""
    text = CONFIGURATION.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == table()
