"""What operators run: replay, trace, health checks, metrics, the embedded Redis."""
