"""The one loader of recnotify's Lua scripts (``workers/state/lua/*.lua``).

Every script lives in its own ``.lua`` file, named for what it does. A line
``-- include: NAME`` is replaced by the text of ``lua/_NAME.lua`` (shared
preludes such as Redis' clock). Scripts get their key names through ``KEYS[]``,
built by :class:`workers.config.settings.Keys` (the ordering scripts also derive the
per-recording keys of a pair from the prefix; they are documented there).

NOSCRIPT, in one place: :class:`Scripts` loads every script when it is built
(one pipelined round trip), so Redis knows all of them or, after a restart or a
``SCRIPT FLUSH``, none. A :class:`Batch` (a pipeline that knows which of its
commands were scripts) that meets NOSCRIPT loads them all again and re-runs the
refused calls in the order they were queued, so scripts never run out of order
relative to each other.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
import redis.client
import redis.exceptions

_INCLUDE = re.compile(r"^-- include: ([a-z_]+)\s*$", re.MULTILINE)

KeyOrArg = str | bytes | int | float


@functools.cache
def sources() -> dict[str, str]:
    """Every script's text by name (the file name without ``.lua``), includes expanded."""
    folder = resources.files("workers.state").joinpath("lua")
    raw = {entry.name[:-4]: entry.read_text(encoding="utf-8")
           for entry in folder.iterdir() if entry.name.endswith(".lua")}

    def expand(match: re.Match[str]) -> str:
        return raw["_" + match.group(1)]

    return {name: _INCLUDE.sub(expand, text) for name, text in raw.items()
            if not name.startswith("_")}


@functools.cache
def shas() -> dict[str, str]:
    return {name: hashlib.sha1(text.encode()).hexdigest() for name, text in sources().items()}


class Scripts:
    """Runs the named scripts on one client (built once per process and shared)."""

    def __init__(self, client: redis.Redis, *, preload: bool = True) -> None:
        self.client = client
        self.sha = shas()
        if preload:
            self.load_all()

    def load_all(self) -> None:
        """Make Redis know every script (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for text in sources().values():
            pipe.script_load(text)
        pipe.execute()

    def run(self, name: str, keys: Sequence[KeyOrArg], args: Sequence[KeyOrArg] = ()
            ) -> Any:
        """Run one script now (loading every script first if Redis lost them)."""
        try:
            return self.client.evalsha(self.sha[name], len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.load_all()
            return self.client.evalsha(self.sha[name], len(keys), *keys, *args)

    @classmethod
    def of(cls, client: redis.Redis) -> Scripts:
        """The :class:`Scripts` of ``client`` (built, and the scripts loaded, once)."""
        found: Scripts | None = getattr(client, "_recnotify_scripts", None)
        if found is None:
            found = cls(client)
            client._recnotify_scripts = found  # type: ignore[attr-defined]
        return found

    def pipeline(self, transaction: bool = False) -> Batch:
        return Batch(self, transaction)


class Batch(redis.client.Pipeline):
    """A pipeline whose script calls survive NOSCRIPT (see the module docstring).

    ``execute`` raises the first error of any command (as a plain pipeline does),
    after re-running the script calls Redis refused with NOSCRIPT.
    """

    def __init__(self, scripts: Scripts, transaction: bool) -> None:
        client = scripts.client
        super().__init__(client.connection_pool, client.response_callbacks, transaction,
                         None)
        self._loader = scripts
        self._calls: dict[int, tuple[str, tuple[KeyOrArg, ...], tuple[KeyOrArg, ...]]] = {}

    def script(self, name: str, keys: Sequence[KeyOrArg], args: Sequence[KeyOrArg] = ()
               ) -> int:
        """Queue script ``name``; returns the index of its reply in :meth:`execute`'s list."""
        self.evalsha(self._loader.sha[name], len(keys), *keys, *args)
        index = len(self) - 1
        self._calls[index] = (name, tuple(keys), tuple(args))
        return index

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        calls, self._calls = self._calls, {}
        replies: list[Any] = super().execute(raise_on_error=False)
        refused = [i for i in sorted(calls)
                   if isinstance(replies[i], redis.exceptions.NoScriptError)]
        if refused:
            self._loader.load_all()
            for i in refused:
                name, keys, args = calls[i]
                replies[i] = self._loader.run(name, keys, args)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies
