"""The request flows: admit (auth, policy, charge) and mint; operator actions; the
run-time state the HTTP layer reaches."""
