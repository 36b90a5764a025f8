"""The call registry: which replica watches which live call, in Redis (or in process for
dev mode), each user's live calls and sessions, and word between replicas."""
