"""Policy documents: the example is valid; each invalid case names its exact errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenbroker.families import vocabulary
from tokenbroker.families.realtime.rules import rules_of
from tokenbroker.policy.model import PolicyError
from tokenbroker.policy.parse import parse_policy_text

ROOT = Path(__file__).parent.parent
INVALID = sorted((Path(__file__).parent / "policies" / "invalid").glob("*.yaml"))

OPENAI = vocabulary("openai")


def expected_errors(path: Path) -> list[str]:
    prefix = "# expect: "
    return [
        line[len(prefix) :] for line in path.read_text().splitlines() if line.startswith(prefix)
    ]


def test_shipped_example_is_valid() -> None:
    """config/policies.yaml, whatever an operator made of it, is a valid policy document."""
    assert parse_policy_text((ROOT / "config" / "policies.yaml").read_text(), OPENAI).policies


def test_example_policy_file_is_valid() -> None:
    """The example (the tests' copy) parses, with extends resolved."""
    policies = parse_policy_text((ROOT / "tests" / "policies" / "example.yaml").read_text(), OPENAI)
    assert set(policies.policies) == {"standard", "premium", "suspended"}
    premium = policies.policies["premium"]
    assert rules_of(premium).voices == ("alloy", "ash")  # inherited
    assert [r.limit for r in premium.limits] == [30]  # overridden
    assert policies.users == {"user-42": "premium"}


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_document_names_every_error(path: Path) -> None:
    """The whole document is refused and every problem is reported by its path."""
    dialect = next((line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                    if line.startswith("# dialect:")), "openai")  # fmt: skip
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(path.read_text(), vocabulary(dialect))
    assert sorted(caught.value.errors) == sorted(expected_errors(path))


def test_not_yaml() -> None:
    """A file that is not YAML is refused with a YAML error."""
    with pytest.raises(PolicyError) as caught:
        parse_policy_text("policies: [unclosed", OPENAI)
    assert caught.value.errors[0].startswith("(yaml):")


def test_audio_formats_by_either_name() -> None:
    """A policy may name formats as GA does (audio/pcmu) or as the seed does (g711_ulaw):
    both mean the same format, which each dialect writes in its own shape."""
    text = "default_policy: p\npolicies:\n  p:\n    models: [m]\n"
    text += "    input_audio_formats: [audio/pcmu, pcm16]\n    output_audio_formats: [audio/pcma]\n"
    policy = rules_of(parse_policy_text(text, OPENAI).policies["p"])
    assert policy.input_audio_formats == ("g711_ulaw", "pcm16")
    assert policy.output_audio_formats == ("g711_alaw",)
