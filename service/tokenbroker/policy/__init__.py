"""What a user may ask for: policy documents (parse, validate), enforcement on a session
(pure), versioned storage and each replica's cached copy."""
