"""tokenbroker: mints OpenAI Realtime ephemeral keys for browser apps, under policy."""

__version__ = "0.1.0"
