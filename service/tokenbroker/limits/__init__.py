"""How often: GCRA token buckets (pure arithmetic), their Redis and in-process drivers,
fail modes when Redis is down, and the RateLimit headers."""
