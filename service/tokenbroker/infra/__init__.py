"""Shared plumbing below the flow: Redis connections, metrics, logs, audit trail, strict
JSON, the circuit breaker."""
