"""A faithful local stand-in for the upstream API (tests, benchmark, dev mode). Nothing on
the mint path imports it; it checks requests against the schema data derived from the official
documents (``tokenbroker/schemas/``), with jsonschema, not with the broker's own validator."""
