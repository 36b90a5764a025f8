"""The admin HTTP API: off without a credential, never opened by an end-user JWT."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest

from conftest import POLICIES, StartBroker, make_token
from servers import TokenbrokerServer

ADMIN_TOKEN = "admin-CANARY-token-5c1d2e3f4a5b6c7d"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker(env={"TOKENBROKER_ADMIN_TOKEN": ADMIN_TOKEN})


def test_admin_api_is_off_without_a_credential(start_broker: StartBroker) -> None:
    """With no admin token configured, /admin/ does not exist."""
    plain = start_broker()
    assert httpx.get(plain.url + "/admin/policy", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {make_token('admin')}", f"Bearer {ADMIN_TOKEN}x", ADMIN_TOKEN, "Bearer x"],
)
def test_wrong_credentials_are_refused(
    broker: TokenbrokerServer, authorization: str | None
) -> None:
    """No credential, an end-user JWT, or anything but the exact token: 401."""
    headers = {"Authorization": authorization} if authorization else {}
    reply = httpx.get(broker.url + "/admin/policy", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"


def test_policy_lifecycle_over_http(broker: TokenbrokerServer) -> None:
    """Show, dry-run, apply, history and rollback through the API."""
    live = httpx.get(broker.url + "/admin/policy", headers=ADMIN).json()
    text = (POLICIES / "integration.yaml").read_text()
    assert live["text"] == text
    edited = text.replace("max: 0.9, default: 0.8", "max: 1.0, default: 0.8")
    yaml_headers = {**ADMIN, "Content-Type": "application/yaml"}

    dry = httpx.post(
        broker.url + "/admin/policy?dry_run=true", content=edited, headers=yaml_headers
    ).json()
    assert dry["version"] is None
    assert "+    temperature: {min: 0.6, max: 1.0, default: 0.8}" in dry["diff"]
    assert dry["notes"] == []  # models the reference lists (policy apply's notes)

    applied = httpx.post(broker.url + "/admin/policy", content=edited, headers=yaml_headers)
    assert applied.status_code == 200
    assert applied.json()["version"] == live["version"] + 1

    bad = httpx.post(broker.url + "/admin/policy", content="policies: {}", headers=yaml_headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_policy"

    history = httpx.get(broker.url + "/admin/policy/history", headers=ADMIN).json()
    assert [v["version"] for v in history["versions"]][-2:] == [
        live["version"],
        live["version"] + 1,
    ]

    rolled = httpx.post(f"{broker.url}/admin/policy/rollback/{live['version']}", headers=ADMIN)
    assert rolled.json() == {"version": live["version"] + 2}
    missing = httpx.post(f"{broker.url}/admin/policy/rollback/999", headers=ADMIN)
    assert missing.status_code == 404


def test_user_operations_over_http(broker: TokenbrokerServer) -> None:
    """Assign, show, reset and unassign a user through the API."""
    url = broker.url + "/admin/users/http-user"
    token = make_token("http-user")

    def mint() -> httpx.Response:
        return httpx.post(
            broker.url + "/v1/realtime/sessions",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )

    assigned = httpx.put(url, json={"policy": "limited"}, headers=ADMIN)
    assert assigned.status_code == 200
    assert assigned.json()["policy"] == "limited"
    assert assigned.json()["policy_source"] == "assignment"
    assert httpx.put(url, json={"policy": "nope"}, headers=ADMIN).status_code == 404
    shown = httpx.get(url, headers=ADMIN).json()
    assert shown["limits"][0]["remaining"] == 3
    assert [mint().status_code for _ in range(4)] == [200, 200, 200, 429]
    assert httpx.get(url, headers=ADMIN).json()["limits"][0]["remaining"] == 0
    reset = httpx.post(url + "/reset", headers=ADMIN).json()
    assert reset["limits"][0]["remaining"] == 3
    unassigned = httpx.delete(url, headers=ADMIN).json()
    assert unassigned["policy"] == "standard"


def test_admin_token_never_reaches_the_logs(broker: TokenbrokerServer) -> None:
    """After good and bad admin calls, the log holds no trace of the admin credential."""
    httpx.get(broker.url + "/admin/policy", headers=ADMIN)
    httpx.get(broker.url + "/admin/policy", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"})
    logs = broker.logs()
    assert "/admin/policy" in logs
    assert ADMIN_TOKEN not in logs
    assert ADMIN_TOKEN[:16] not in logs


HOSTILE_YAML = {
    "nested lists": "[" * 500 + "]" * 500,
    "nested maps": "a: " + "{a: " * 400 + "1" + "}" * 400,
    "billion laughs": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    + "default_policy: j\npolicies: {j: {models: *i}}\n",
}


@pytest.mark.parametrize("name", list(HOSTILE_YAML))
def test_hostile_policy_yaml_is_400_while_mints_go_on(
    broker: TokenbrokerServer, tmp_path: Path, name: str
) -> None:
    """A document nested hundreds of levels deep or expanding past the node cap through
    aliases is refused 400 invalid_policy by the admin API, naming the bound, while a mint
    sent meanwhile is answered at once; `policy validate` prints the same, no traceback."""
    yaml_headers = {**ADMIN, "Content-Type": "application/yaml"}
    token = make_token("while-hostile-policy")
    # clients made beforehand: making one (its TLS context) costs the test process ~30 ms
    # of CPU, which would be counted in the mint's time
    with httpx.Client() as minter, httpx.Client(timeout=30) as admin, ThreadPoolExecutor(1) as pool:
        mint = partial(minter.post, broker.url + "/v1/realtime/sessions", json={},
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert mint().status_code == 200  # a first mint's one-off costs are not measured
        hostile = pool.submit(admin.post, broker.url + "/admin/policy",
                              content=HOSTILE_YAML[name], headers=yaml_headers)  # fmt: skip
        started = time.monotonic()
        minted = mint()
        elapsed = time.monotonic() - started
        refused = hostile.result()
    assert minted.status_code == 200 and elapsed < 0.1
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_policy"
    assert "levels" in error["message"] or "aliases expanded" in error["message"]
    path = tmp_path / "hostile.yaml"
    path.write_text(HOSTILE_YAML[name])
    validated = subprocess.run(
        [sys.executable, "-m", "tokenbroker", "policy", "validate", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert validated.returncode == 1
    assert "Traceback" not in validated.stderr
    assert "levels" in validated.stderr or "aliases expanded" in validated.stderr
