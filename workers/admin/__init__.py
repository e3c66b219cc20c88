"""The admin service: the External Event Destinations page, a JSON API, metrics."""

from workers.admin.app import create_app

__all__ = ["create_app"]
