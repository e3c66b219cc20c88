"""Hosts as network namespaces on one private subnet, for tests/system/test_multihost.py.

A :class:`Network` is a switch (a Linux bridge in its own namespace, so nothing in the
root namespace is bridged) and a /24 chosen free of the root namespace's routes. Each
:class:`Host` is a namespace with loopback and one veth link to the switch
(``eth0``, address ``.2``, ``.3``, ...); the root namespace gets a leg too (``.1``) so
the test process itself can publish to and read the Redis host. Everything is made
with ``ip`` (iproute2) and needs root; :func:`missing` names what is not there.

``python -m tests.netns receive --bind ADDR --port N --out FILE [--delay S]`` is the
receiver host's HTTP server: it answers 200 to everything (after ``--delay``) and
appends one JSON line per request to FILE: the ``webhook-id``, the arrival time
(``time.time()``: all namespaces share the clock) and the peer address, so a test knows
which host sent each notification.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def missing(*commands: str) -> str | None:
    """Why hosts cannot be built here (root, ``ip`` and ``commands``), or None."""
    lacking = []
    if os.geteuid() != 0:
        lacking.append("root (network namespaces, veth links)")
    for command in ("ip", *commands):
        if shutil.which(command) is None:
            lacking.append(f"`{command}` on PATH")
    return "needs " + ", ".join(lacking) if lacking else None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def free_subnet(first: str = "10.213.0.0/24") -> ipaddress.IPv4Network:
    """``first``, or the next /24 after it that no root-namespace route overlaps."""
    routes = ip("-4", "route", "show", "table", "all").stdout.split("\n")
    used = []
    for line in routes:
        word = line.split(" ", 1)[0]
        if word and word[0].isdigit():
            used.append(ipaddress.ip_network(word, strict=False))
    candidate = ipaddress.IPv4Network(first)
    for _ in range(256):
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return candidate
        candidate = ipaddress.IPv4Network((int(candidate.network_address) + 256, 24))
    raise RuntimeError(f"no free /24 from {first}")


@dataclass
class Host:
    """One namespace on the switch: ``argv`` runs a command inside it."""

    name: str
    netns: str
    address: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *command]

    def start(self, command: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        handle = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(self.argv(*command), stdout=handle, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd)
        proc.log_path = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        out = ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def link_down(self) -> None:
        ip("-n", self.netns, "link", "set", "eth0", "down")

    def kill_all(self, timeout_s: float = 10) -> list[int]:
        """SIGKILL every process in the namespace (ours or not) until none is left."""
        killed: list[int] = []
        deadline = time.monotonic() + timeout_s
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    if pid not in killed:
                        killed.append(pid)
                except ProcessLookupError:
                    pass
            for proc in self.procs:  # reap our own, so they leave the namespace
                if proc.pid in pids:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes left in {self.netns}: {self.pids()}")
            time.sleep(0.05)
        return killed


class Network:
    """A switch namespace with a bridge, a root-namespace leg, and hosts on one /24."""

    def __init__(self, subnet: ipaddress.IPv4Network | None = None) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.subnet = subnet or free_subnet()
        self.switch = f"rn{self.tag}-switch"
        self.root_link = f"rn{self.tag}"  # an interface name: at most 15 characters
        self.hosts: list[Host] = []
        ip("netns", "add", self.switch)
        try:
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            ip("link", "add", self.root_link, "type", "veth", "peer", "name", "root",
               "netns", self.switch)
            self._plug("root")
            self.root_address = str(self.subnet[1])
            ip("addr", "add", f"{self.root_address}/{self.subnet.prefixlen}", "dev",
               self.root_link)
            ip("link", "set", self.root_link, "up")
        except BaseException:
            self.close()
            raise

    def _plug(self, port: str) -> None:
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")

    def add_host(self, name: str) -> Host:
        host = Host(name, f"rn{self.tag}-{name}", str(self.subnet[len(self.hosts) + 2]))
        ip("netns", "add", host.netns)
        self.hosts.append(host)
        port = f"h{len(self.hosts)}"
        ip("link", "add", port, "netns", self.switch, "type", "veth", "peer", "name", "eth0",
           "netns", host.netns)
        self._plug(port)
        ip("-n", host.netns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev",
           "eth0")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        """Kill every process in every host, delete the namespaces and the root leg."""
        errors: list[str] = []
        for host in self.hosts:
            try:
                host.kill_all()
            except Exception as exc:  # keep cleaning up
                errors.append(str(exc))
            for proc in host.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
            ip("netns", "del", host.netns, check=False)
        ip("netns", "del", self.switch, check=False)
        ip("link", "del", self.root_link, check=False)  # gone with its peer, unless raced
        deadline = time.monotonic() + 10
        while ip("link", "show", self.root_link, check=False).returncode == 0:
            if time.monotonic() > deadline:
                errors.append(f"interface {self.root_link} still there")
                break
            time.sleep(0.1)
        if errors:
            raise RuntimeError("; ".join(errors))


# -- the receiver host's server --------------------------------------------------------------


def serve(bind: str, port: int, out: Path, delay_s: float) -> None:
    lock = threading.Lock()
    sink = open(out, "a", buffering=1)  # noqa: SIM115 - lives as long as the server

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            line = json.dumps({"id": self.headers.get("webhook-id") or "", "at": time.time(),
                               "peer": self.client_address[0], "path": self.path})
            with lock:
                sink.write(line + "\n")
            if delay_s:
                time.sleep(delay_s)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = do_PUT = _handle

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a killed host's connections break mid-request: expected

    server = Server((bind, port), Handler)
    print(f"listening on {bind}:{port}", flush=True)
    server.serve_forever()


def read_received(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.netns")
    sub = parser.add_subparsers(dest="command", required=True)
    receive = sub.add_parser("receive", help="record every notification, answer 200")
    receive.add_argument("--bind", required=True)
    receive.add_argument("--port", type=int, default=8000)
    receive.add_argument("--out", type=Path, required=True)
    receive.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    serve(args.bind, args.port, args.out, args.delay)


if __name__ == "__main__":
    main()
