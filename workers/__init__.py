"""recnotify workers: consume recording events, fan out and deliver HTTP notifications."""

__version__ = "0.1.0"
