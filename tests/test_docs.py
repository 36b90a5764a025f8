"""The front door: a README short enough to read, and a docs site that builds.

``mkdocs build --strict`` runs in ``./scripts/test`` (a broken link, a missing anchor or a
page left out of the navigation fails it); here, what a reader meets first."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    assert max(len(line) for line in lines if not line.startswith(("http", "<"))) <= 100


def test_readme_links_resolve() -> None:
    """Every relative link of the README names a file of the repository (and a docs
    page the site's navigation has)."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(items: object) -> set[str]:
        if isinstance(items, str):
            return {items}
        if isinstance(items, list):
            return set().union(*map(pages, items))
        if isinstance(items, dict):
            return set().union(*map(pages, items.values()))
        return set()

    in_nav = pages(nav)
    links = re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local
    for link in local:
        assert (ROOT / link).exists(), link
        if link.startswith("docs/") and link.endswith(".md"):
            assert link.removeprefix("docs/") in in_nav, link


def test_license_is_apache_and_named_in_the_package() -> None:
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    project = (ROOT / "pyproject.toml").read_text()
    assert 'license = "Apache-2.0"' in project
    assert 'license-files = ["LICENSE"]' in project
