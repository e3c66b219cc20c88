"""The event stream consumer: read, match, fan out, acknowledge."""
