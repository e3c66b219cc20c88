"""Finding the service ``recnotify run`` started, from any directory, with no environment.

- The **data dir** (SQLite database, secret key, embedded Redis data, the run file) is
  ``RECNOTIFY_DATA_DIR`` (or ``--data-dir``), else ``./.recnotify`` in the current
  directory (SPEC 7).
- The **run file** ``<data dir>/run.json``: ``recnotify run`` writes it once its Redis
  answers and removes it when it stops: the Redis URL, key prefix and database URL it
  serves, its absolute data dir, and its pid. A reader uses it only while that pid is
  alive, and only for what is not configured explicitly.
- The **per-user pointer** ``<user data dir>/run.json`` (``~/.local/share/recnotify`` on
  Linux, like platformdirs' ``user_data_dir``, in the standard library because recorders
  import this package with redis-py only): the same content, written by the latest
  ``recnotify run``. With no data dir given, :func:`find_running` reads the run file in
  ``./.recnotify`` first, else this pointer, whose data dir then becomes the reader's.
  With a data dir given, only that dir's run file counts.

Both files are private (mode 0600): the URLs may carry passwords.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

ENV_DATA_DIR = "RECNOTIFY_DATA_DIR"
RUN_FILE_NAME = "run.json"
APP_NAME = "recnotify"
#: The data dir when none is given: this name in the current directory (SPEC 7).
DEFAULT_DATA_DIR_NAME = ".recnotify"


def user_data_dir() -> Path:
    """The platform's per-user data directory for recnotify (like platformdirs)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base_dir / APP_NAME


def cwd_data_dir() -> Path:
    """The default data dir: ``./.recnotify`` in the current directory, made absolute.

    Raises ``FileNotFoundError`` when the current directory no longer exists.
    """
    return Path.cwd() / DEFAULT_DATA_DIR_NAME


def explicit_data_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """``RECNOTIFY_DATA_DIR`` when set (non-empty), else None."""
    given = (os.environ if env is None else env).get(ENV_DATA_DIR, "")
    return Path(given).expanduser() if given else None


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``RECNOTIFY_DATA_DIR`` when set, else ``./.recnotify`` (:func:`cwd_data_dir`)."""
    return explicit_data_dir(env) or cwd_data_dir()


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a running ``recnotify run`` serves."""

    redis_url: str
    key_prefix: str
    database_url: str
    pid: int
    #: the absolute data dir of that run (its database, secret key, flower.auth)
    data_dir: str


def run_file(data_dir: Path) -> Path:
    return data_dir / RUN_FILE_NAME


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def pointer_file() -> Path:
    """The per-user pointer to the latest live ``recnotify run``."""
    return run_file(user_data_dir())


def _read(path: Path, data_dir: Path | None) -> RunInfo | None:
    """The run info in ``path`` if its process is alive; ``data_dir`` fills an old file's gap."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        recorded = raw.get("data_dir") or (str(data_dir.resolve()) if data_dir else "")
        info = RunInfo(
            redis_url=str(raw["redis_url"]),
            key_prefix=str(raw["key_prefix"]),
            database_url=str(raw["database_url"]),
            pid=int(raw["pid"]),
            data_dir=str(recorded),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not info.data_dir or not Path(info.data_dir).is_absolute():
        return None
    return info if pid_alive(info.pid) else None


def read_run_file(data_dir: Path) -> RunInfo | None:
    """The live run file in ``data_dir``, or None (absent, unreadable, or its process gone)."""
    return _read(run_file(data_dir), data_dir)


def read_pointer() -> RunInfo | None:
    """The live per-user pointer, or None (absent, unreadable, or its process gone)."""
    return _read(pointer_file(), None)


def find_running(data_dir: Path | None) -> RunInfo | None:
    """The live ``recnotify run`` a command should use.

    ``data_dir`` given (``--data-dir`` / ``RECNOTIFY_DATA_DIR``): only its run file.
    None: the run file in ``./.recnotify``, else the per-user pointer.
    """
    if data_dir is not None:
        return read_run_file(data_dir)
    try:
        here = read_run_file(cwd_data_dir())
    except OSError:  # the current directory is gone: only the pointer can say
        here = None
    return here or read_pointer()


def _write(path: Path, info: RunInfo) -> Path:
    tmp = path.with_name(f".{RUN_FILE_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(info), handle)
    os.replace(tmp, path)
    return path


def write_run_file(data_dir: Path, info: RunInfo) -> Path:
    """Write the run file in ``data_dir`` atomically, readable by its owner only."""
    return _write(run_file(data_dir), info)


def write_pointer(info: RunInfo) -> Path:
    """Point the per-user pointer at ``info`` (atomically, owner-only): the latest run wins."""
    directory = user_data_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _write(run_file(directory), info)


def _remove(path: Path, pid: int) -> None:
    try:
        if int(json.loads(path.read_text(encoding="utf-8")).get("pid", -1)) == pid:
            path.unlink()
    except (OSError, ValueError, TypeError, AttributeError):
        pass


def remove_run_file(data_dir: Path, pid: int) -> None:
    """Remove the run file if it is still the one process ``pid`` wrote."""
    _remove(run_file(data_dir), pid)


def remove_pointer(pid: int, previous: RunInfo | None = None) -> None:
    """Remove the per-user pointer if process ``pid`` wrote it.

    ``previous``: the pointer this run replaced; while that run is still alive, the
    pointer goes back to it instead (so another live run stays findable).
    """
    path = pointer_file()
    try:
        current = int(json.loads(path.read_text(encoding="utf-8")).get("pid", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        return
    if current != pid:
        return
    still = read_run_file(Path(previous.data_dir)) if previous is not None else None
    if still is not None and still.pid != pid:
        try:
            _write(path, still)
            return
        except OSError:
            pass
    _remove(path, pid)
