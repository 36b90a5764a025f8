"""HTTP in and out: the Starlette app and its routes, the edge (request ids, log line,
security headers), body reading, and the one place an error becomes a JSON reply."""
