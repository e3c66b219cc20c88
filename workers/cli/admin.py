"""``recnotify admin``: serve the External Event Destinations page, the API and metrics."""

from __future__ import annotations

import os

import click

from workers.config.settings import Settings
from workers.errors import ConfigError

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
@click.option("--trusted-proxies", envvar="RECNOTIFY_TRUSTED_PROXIES", default="",
              metavar="CIDRS", help="Proxies whose X-Forwarded-For the audit log believes, "
              "comma separated (default: none) [env RECNOTIFY_TRUSTED_PROXIES].")
@click.pass_context
def admin(ctx: click.Context, addr: str, trusted_proxies: str) -> None:
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
    from workers.admin.auth import is_loopback, parse_trusted_proxies

    host, port = parse_addr(addr)
    try:
        proxies = parse_trusted_proxies(trusted_proxies)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-proxies") from None
    token = os.environ.get("RECNOTIFY_ADMIN_TOKEN") or None
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the admin API on {addr} without a token: set "
            "RECNOTIFY_ADMIN_TOKEN (e.g. `export RECNOTIFY_ADMIN_TOKEN=$(openssl rand "
            "-hex 24)`), or listen on a loopback address such as 127.0.0.1:8080")
    settings: Settings = ctx.find_object(Settings) or Settings.from_env()
    settings.require_database()  # never create an empty database: say where it looked
    if token is None:
        click.echo(f"warning: RECNOTIFY_ADMIN_TOKEN is not set: the admin API on {addr} is "
                   "open to anyone who can reach this loopback address", err=True)
    click.echo(f"admin: http://{addr}/  (API docs: http://{addr}/docs)", err=True)
    # proxy_headers=False: uvicorn would believe X-Forwarded-For from any loopback peer;
    # the app believes it only from --trusted-proxies (workers.admin.auth.client_address)
    uvicorn.run(create_app(settings, token, trusted_proxies=proxies), host=host, port=port,
                log_level=settings.log_level.lower(), access_log=False, proxy_headers=False)
