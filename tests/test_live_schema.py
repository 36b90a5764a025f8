"""The GPT-Live schema data is what the pinned SDK's types say, tightened as documented:
re-deriving it gives the committed file, and the tightening holds."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

from jsonschema import Draft202012Validator

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from derive_live_schema import derive  # the script beside the data

from live import OFFER

TEXT = resources.files("tokenbroker").joinpath("schemas", "live.json").read_text()


def test_the_committed_schema_is_derived_from_the_pinned_sdk() -> None:
    """A new SDK version shows up here, not as a silent difference."""
    assert json.loads(TEXT) == derive()


def validator() -> Draft202012Validator:
    return Draft202012Validator({**json.loads(TEXT), "$ref": "#/$defs/LiveCreateParams"})


def test_request_objects_are_closed_and_limited() -> None:
    """Unknown fields are refused (the service does; the SDK's types do not say so), and
    the limits the types lack are there."""
    good = {"session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": OFFER}}
    assert validator().is_valid(good)
    for bad_session in ({"model": "gpt-live-1", "bogus": 1},
                        {"model": "gpt-live-1", "audio": {"output": {"voice": {"id": ""}}}},
                        {"model": "gpt-live-1", "wake_policy": {"type": "speech",
                                                                "vad_threshold": 2}},
                        {"model": "gpt-live-1", "client": {"data_channel": {
                            "allowed_client_events": ["Not An Event"]}}}):  # fmt: skip
        assert not validator().is_valid({**good, "session": bad_session}), bad_session
    assert not validator().is_valid({**good, "transport": {"type": "sip", "sdp": OFFER}})
