"""Who is calling: JWT verification against the configured providers, JWKS caching."""
