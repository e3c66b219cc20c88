"""``recnotify listen``: a local receiver for first tries and integration work.

It prints every request that arrives: the method and path, each URL parameter
decoded, the headers, the body (JSON pretty-printed), and whether the Standard
Webhooks signature verifies with ``--secret`` (for GET the signed payload is the
request target exactly as sent, for POST the body; SPEC 5). It answers
``--status`` (200 by default) so a destination's retries can be tried as well.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import click

from workers.errors import ConfigError
from workers.http.signing import validate_secret, verify

DEFAULT_PORT = 9000
_print_lock = threading.Lock()


def register(main: click.Group) -> None:
    main.add_command(listen)


def signature_verdict(secret: str | None, headers: Any, payload: bytes) -> str:
    """One phrase: does the request's ``webhook-signature`` verify with ``secret``?"""
    header = headers.get("webhook-signature")
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if not header:
        return "not signed (no webhook-signature header)"
    if not secret:
        return "present, not checked (give --secret whsec_... to verify it)"
    if not msg_id or not stamp or not stamp.isdigit():
        return "INVALID: webhook-id or webhook-timestamp missing"
    if verify(secret, msg_id, int(stamp), payload, header):
        return "verified"
    return "INVALID: does not match --secret (another secret, or the request was altered)"


def describe(method: str, target: str, headers: Any, body: bytes, secret: str | None) -> str:
    """The printed form of one request."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    split = urlsplit(target)
    lines = [f"{now}  {method} {split.path}"]
    params = parse_qsl(split.query, keep_blank_values=True)
    if params:
        lines.append("  params:")
        lines += [f"    {name} = {value}" for name, value in params]
    lines.append("  headers:")
    lines += [f"    {name}: {value}" for name, value in headers.items()]
    if body:
        try:
            text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            text = body.decode("utf-8", errors="replace")
        lines.append("  body:")
        lines += [f"    {line}" for line in text.splitlines()]
    payload = body if method != "GET" else target.encode("utf-8")
    lines.append(f"  signature: {signature_verdict(secret, headers, payload)}")
    return "\n".join(lines)


def make_handler(secret: str | None, status: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "recnotify-listen"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            text = describe(self.command, self.path, self.headers, body, secret)
            with _print_lock:
                click.echo(text + "\n")
                sys.stdout.flush()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return  # every request is printed by _handle

    return Handler


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--secret", metavar="whsec_...", envvar="RECNOTIFY_LISTEN_SECRET",
              help="The destination's signing secret, to verify signatures "
              "[env RECNOTIFY_LISTEN_SECRET].")
@click.option("--status", type=click.IntRange(100, 599), default=200, show_default=True,
              help="Status to answer with (e.g. 503 to watch retries).")
def listen(port: int, host: str, secret: str | None, status: int) -> None:
    """Print every notification that arrives here, and whether its signature verifies.

    \b
    Example:
      recnotify listen --port 9000 --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
      # destination url: http://127.0.0.1:9000/hooks/recordings
    """
    if secret:
        try:
            validate_secret(secret)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--secret") from None
    try:
        server = ThreadingHTTPServer((host, port), make_handler(secret, status))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                          "choose another --port") from None
    bound = server.server_address[1]
    click.echo(f"listening on http://{host}:{bound}/ (answering {status}; Ctrl-C stops)",
               err=True)
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
