"""Settings: typed sections with one default each, loaded from YAML and the environment."""
