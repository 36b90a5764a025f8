"""Live calls: the registry in Redis of which replica watches which call."""
