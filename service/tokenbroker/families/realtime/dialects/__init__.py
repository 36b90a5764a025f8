"""One module per upstream dialect: its endpoint, its auth header, the request body it
wants for an enforced session, and how its reply gives the secret. Transport, retries,
the breaker and refunds stay shared (:mod:`tokenbroker.upstream.client`).

    openai       GA   POST {url}/realtime/client_secrets        Authorization: Bearer KEY
    openai-beta  beta POST {url}/realtime/sessions              Authorization: Bearer KEY
    azure        GA   POST {url}/realtime/client_secrets        api-key: KEY
                      ({url} = https://{resource}.openai.azure.com/openai/v1)
"""

from __future__ import annotations

from tokenbroker.families.realtime.dialects.base import Dialect
from tokenbroker.families.realtime.dialects.beta import BETA
from tokenbroker.families.realtime.dialects.ga import AZURE, OPENAI

DIALECTS: dict[str, Dialect] = {d.name: d for d in (OPENAI, BETA, AZURE)}

__all__ = ["AZURE", "BETA", "DIALECTS", "OPENAI", "Dialect"]
