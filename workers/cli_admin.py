"""``recnotify admin``: serve the External Event Destinations page, the API and metrics."""

from __future__ import annotations

import os
import sys

import click

from workers.settings import Settings

DEFAULT_ADDR = "127.0.0.1:8080"


def register(main: click.Group) -> None:
    main.add_command(admin)


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:8080``) -> (host, port); BadParameter naming it."""
    host, sep, port_text = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"{addr!r} is not HOST:PORT (e.g. {DEFAULT_ADDR})",
                                 param_hint="--addr")
    return host, int(port_text)


@click.command()
@click.option("--addr", envvar="RECNOTIFY_ADMIN_ADDR", default=DEFAULT_ADDR, show_default=True,
              metavar="HOST:PORT", help="Where to listen [env RECNOTIFY_ADMIN_ADDR].")
@click.pass_context
def admin(ctx: click.Context, addr: str) -> None:
    """Serve the admin page, the JSON API (/api, /docs), /metrics and /healthz.

    The API needs `Authorization: Bearer $RECNOTIFY_ADMIN_TOKEN`. Without a
    token the service starts only on a loopback address, with the API open.

    \b
    Examples:
      recnotify admin                                   # http://127.0.0.1:8080/, API open
      RECNOTIFY_ADMIN_TOKEN=$(openssl rand -hex 24) \\
          recnotify admin --addr 0.0.0.0:8080
    """
    import uvicorn

    from workers.admin import create_app
    from workers.admin.auth import is_loopback

    host, port = parse_addr(addr)
    token = os.environ.get("RECNOTIFY_ADMIN_TOKEN") or None
    if token is None and not is_loopback(host):
        click.echo(f"error: refusing to serve the admin API on {addr} without a token: set "
                   "RECNOTIFY_ADMIN_TOKEN (e.g. `export RECNOTIFY_ADMIN_TOKEN=$(openssl rand "
                   "-hex 24)`), or listen on a loopback address such as 127.0.0.1:8080",
                   err=True)
        sys.exit(2)
    settings: Settings = ctx.find_object(Settings) or Settings.from_env()
    if token is None:
        click.echo(f"warning: RECNOTIFY_ADMIN_TOKEN is not set: the admin API on {addr} is "
                   "open to anyone who can reach this loopback address", err=True)
    click.echo(f"admin: http://{addr}/  (API docs: http://{addr}/docs)", err=True)
    uvicorn.run(create_app(settings, token), host=host, port=port,
                log_level=settings.log_level.lower(), access_log=False)
