"""Finding the service ``recnotify run`` started, from any directory, with no environment.

Two pieces, both independent of the current directory:

- the **data dir** (SQLite database, secret key, embedded Redis data, the run file):
  ``RECNOTIFY_DATA_DIR``, else the per-user data directory of the platform
  (``$XDG_DATA_HOME/recnotify`` or ``~/.local/share/recnotify`` on Linux,
  ``~/Library/Application Support/recnotify`` on macOS, ``%LOCALAPPDATA%\\recnotify``
  on Windows; the same rule as platformdirs' ``user_data_dir``, in the standard
  library because recorders import this package with redis-py only);
- the **run file** ``<data dir>/run.json`` that ``recnotify run`` writes once its Redis
  answers and removes when it stops: the Redis URL, key prefix and database URL it
  serves, and its pid. A reader uses it only while that pid is alive, and only for
  what is not configured explicitly (an argument, an option or the environment).

The file is private (mode 0600): the URLs may carry passwords.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ENV_DATA_DIR = "RECNOTIFY_DATA_DIR"
RUN_FILE_NAME = "run.json"
APP_NAME = "recnotify"


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


def default_data_dir(env: dict[str, str] | None = None) -> Path:
    """``RECNOTIFY_DATA_DIR`` when set, else :func:`user_data_dir` (never the cwd)."""
    given = (os.environ if env is None else env).get(ENV_DATA_DIR, "")
    return Path(given).expanduser() if given else user_data_dir()


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a running ``recnotify run`` serves."""

    redis_url: str
    key_prefix: str
    database_url: str
    pid: int


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


def read_run_file(data_dir: Path) -> RunInfo | None:
    """The live run file in ``data_dir``, or None (absent, unreadable, or its process gone)."""
    try:
        raw = json.loads(run_file(data_dir).read_text(encoding="utf-8"))
        info = RunInfo(
            redis_url=str(raw["redis_url"]),
            key_prefix=str(raw["key_prefix"]),
            database_url=str(raw["database_url"]),
            pid=int(raw["pid"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if pid_alive(info.pid) else None


def write_run_file(data_dir: Path, info: RunInfo) -> Path:
    """Write the run file atomically, readable by its owner only."""
    path = run_file(data_dir)
    tmp = path.with_name(f".{RUN_FILE_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(info), handle)
    os.replace(tmp, path)
    return path


def remove_run_file(data_dir: Path, pid: int) -> None:
    """Remove the run file if it is still the one process ``pid`` wrote."""
    path = run_file(data_dir)
    try:
        if int(json.loads(path.read_text(encoding="utf-8")).get("pid", -1)) == pid:
            path.unlink()
    except (OSError, ValueError, TypeError, AttributeError):
        pass
