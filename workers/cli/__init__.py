"""The ``recnotify`` command line (entry point: :func:`workers.cli.main.main`)."""
