"""Settings read once at the edge: the environment, Redis key names, the secret key, logging."""
