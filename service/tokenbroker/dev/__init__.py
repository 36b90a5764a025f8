"""`tokenbroker dev`: dev signing keys and tokens, the in-process runtime, the demo page."""
