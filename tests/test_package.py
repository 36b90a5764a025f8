"""The install lines are true: `python -m build` makes an sdist and, from it, a wheel; the
wheel installed in a fresh virtual environment runs `tokenbroker dev`, which serves a mint,
the browser client and the demo page (package data that the wheel missed would be a 404
or a crash here, not in a user's hands)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import httpx

from servers import Process, free_port

ROOT = Path(__file__).parent.parent


def test_wheel_from_sdist_installs_and_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(n.endswith("/LICENSE") for n in names)
    with zipfile.ZipFile(wheel) as archive:
        inside = archive.namelist()
        metadata = archive.read(next(n for n in inside if n.endswith("/METADATA"))).decode()
    for data in (
        "tokenbroker/http/client.js",
        "tokenbroker/dev/demo.html",
        "tokenbroker/dev/policies.yaml",
        "tokenbroker/schemas/live.json",
    ):
        assert data in inside, data
    assert "License-Expression: Apache-2.0" in metadata

    # A fresh environment with the wheel alone; its dependencies are those already
    # installed for the tests (a .pth file), so the test needs no package index.
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)  # fmt: skip
    fresh = venv / "bin" / "python"
    site = subprocess.run([str(fresh), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()  # fmt: skip
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, timeout=300)  # fmt: skip
    where = subprocess.run(
        [str(fresh), "-c", "import tokenbroker; print(tokenbroker.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's

    port = free_port()
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": "", "PYTHONPATH": ""}
    server = Process([str(venv / "bin" / "tokenbroker"), "dev", "--port", str(port)],
                     env, cwd=tmp_path)  # fmt: skip
    try:
        server.wait_for(r"Uvicorn running on")
        token = re.search(r"Bearer ([\w.-]+)'", server.output)
        assert token, server.output
        url = f"http://127.0.0.1:{port}"
        minted = httpx.post(f"{url}/v1/realtime/client_secrets",
                            json={"session": {"type": "realtime"}},
                            headers={"Authorization": f"Bearer {token.group(1)}"})  # fmt: skip
        assert minted.status_code == 200, minted.text
        assert minted.json()["value"].startswith("ek_")
        client = httpx.get(f"{url}/v1/client.js")
        assert client.status_code == 200 and "export async function connect" in client.text
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and 'id="mint"' in page.text
    finally:
        server.stop()
    assert os.path.exists(venv / "bin" / "tokenbroker")
