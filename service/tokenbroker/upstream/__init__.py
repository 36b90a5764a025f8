"""The upstream mint call: transport, retries within a deadline, circuit breaker."""
