"""A request the reference refuses gets a message that says what the field must be, in the
reference's own terms (its ranges and values, as the official documents give them), and
never echoes the value sent."""

from __future__ import annotations

from typing import Any

import pytest

from tokenbroker.errors import InvalidRequest
from tokenbroker.families.realtime.request_ga import validate_client_secret_request
from tokenbroker.families.realtime.session import validate_session


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"temperature": 1.5}, "invalid_value",
         "Invalid value for 'temperature': must be at most 1.2."),
        ({"temperature": "hot"}, "invalid_type",
         "Invalid value for 'temperature': must be a number."),
        ({"input_audio_format": "mp3"}, "invalid_value",
         """Invalid value for 'input_audio_format': must be one of "pcm16", "g711_ulaw", """
         '"g711_alaw".'),
        ({"max_response_output_tokens": 5000}, "invalid_value",
         """Invalid value for 'max_response_output_tokens': must be an integer from 1 to """
         '4096 or "inf".'),
        ({"turn_detection": {"type": "server_vad", "threshold": 2}}, "invalid_value",
         "Invalid value for 'turn_detection.threshold': must be at most 1.0."),
        ({"instructions": None}, "invalid_type",
         "Invalid value for 'instructions': must be a string."),
    ],
)  # fmt: skip
def test_seed_request_messages(body: dict[str, Any], code: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_session(body)
    assert (caught.value.code, caught.value.message) == (code, message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"session": {"type": "realtime", "audio": {"output": {"speed": 9}}}},
         "Invalid value for 'session.audio.output.speed': must be at most 1.5."),
        ({"expires_after": {"anchor": "created_at", "seconds": 5}},
         "Invalid value for 'expires_after.seconds': must be at least 10."),
        ({"session": {"type": "realtime", "output_modalities": ["video"]}},
         """Invalid value for 'session.output_modalities[0]': must be one of "text", """
         '"audio".'),
        # a union with an object branch has no short sentence: the field is still named
        ({"session": {"type": "realtime", "audio": {"output": {"voice": 7}}}},
         "Invalid value for 'session.audio.output.voice'."),
    ],
)  # fmt: skip
def test_ga_request_messages(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_client_secret_request(body)
    assert caught.value.message == message


def test_the_value_sent_is_not_echoed() -> None:
    """A value may be anything the browser put there: the message names the field and the
    rule, not the value."""
    secret = "sk-this-must-not-come-back"
    with pytest.raises(InvalidRequest) as caught:
        validate_session({"input_audio_format": secret})
    assert secret not in caught.value.message
