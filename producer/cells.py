"""Cells: several independent Redis primaries, each event routed to one by its account. Pure.

A cell is one Redis (plain or ``sentinel://``) with its own ``recnotify worker``
processes; all cells share one destination database. :class:`CellRouter` picks the
cell of an event, the same way in the producer (``Publisher(cells=...)``), in
``recnotify trace`` and in dead-letter replay:

1. the **cell table** (``RECNOTIFY_CELL_TABLE="bigcorp=1,acme=0"``): an account listed
   there goes to that cell (an index from 0, or a cell's name);
2. else the **routing key** hashed: ``sha256(key)``, its first 8 bytes as a big-endian
   number, modulo the number of cells. The key is the account; an event without an
   account uses ``realm:<realm>``, else ``route:<route>``; an event with none of
   them goes to cell 0.

All events of one recording carry the same account (or realm, or route), so they
land in one cell, and ``ordered`` destinations keep their order there.

Adding or removing a cell changes ``hash % cells`` for most accounts: their new events
go to another cell while their older ones (retries, ordered recordings in flight) finish
in the old one. Pin the tenants that matter in the table first (their current cell:
:meth:`CellRouter.index_for`), then resize; the table wins over the hash.

The cell list is ``RECNOTIFY_CELLS``: comma-separated URLs, each optionally named
``NAME=URL`` (``a=redis://10.0.0.1:6379/0,b=redis://10.0.0.2:6379/0``); unnamed cells are
named by their index (``0``, ``1``, ...).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producer.errors import InvalidPublishOption
from producer.redis_url import redact

ENV_CELLS = "RECNOTIFY_CELLS"
ENV_CELL_TABLE = "RECNOTIFY_CELL_TABLE"

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell: its index, name and Redis URL."""

    index: int
    name: str
    url: str = field(repr=False)

    def __str__(self) -> str:
        """``cell b (redis://***@10.0.0.2:6379/0)``: for messages (password masked)."""
        return f"cell {self.name} ({redact(self.url)})"


def parse_cells(spec: str | Sequence[str]) -> tuple[Cell, ...]:
    """The cells of ``RECNOTIFY_CELLS`` (a comma-separated string) or of a list of URLs."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    cells: list[Cell] = []
    for index, item in enumerate(items):
        name, url = str(index), item
        head, sep, rest = item.partition("=")
        if sep and "://" not in head:  # NAME=URL (a URL's own "=" comes after its "://")
            if not _NAME.match(head.strip()):
                raise InvalidPublishOption(
                    f"cell name {head.strip()!r} in {ENV_CELLS} is not valid: use letters, "
                    "digits, '.', '_' or '-' (NAME=redis://host:port/db)")
            name, url = head.strip(), rest.strip()
        if "://" not in url:
            raise InvalidPublishOption(
                f"cell {name} in {ENV_CELLS} is {redact(url)!r}, not a Redis URL: give "
                "comma-separated redis://, rediss://, unix:// or sentinel:// URLs")
        cells.append(Cell(index, name, url))
    names = [c.name for c in cells]
    for name in names:
        if names.count(name) > 1:
            raise InvalidPublishOption(f"cell name {name!r} is given twice in {ENV_CELLS}")
    return tuple(cells)


def parse_cell_table(spec: str | Mapping[str, int | str], cells: Sequence[Cell]
                     ) -> dict[str, int]:
    """``account -> cell index`` from ``"bigcorp=1,acme=b"`` or a mapping (index or name)."""
    if isinstance(spec, str):
        pairs: list[tuple[str, Any]] = []
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            account, sep, target = item.rpartition("=")
            if not sep or not account.strip() or not target.strip():
                raise InvalidPublishOption(
                    f"{item!r} in {ENV_CELL_TABLE} is not ACCOUNT=CELL (e.g. bigcorp=1)")
            pairs.append((account.strip(), target.strip()))
    else:
        pairs = list(spec.items())
    by_name = {c.name: c.index for c in cells}
    table: dict[str, int] = {}
    for account, target in pairs:
        text = str(target)
        if text in by_name:
            index = by_name[text]
        elif text.isdigit() and int(text) < len(cells):
            index = int(text)
        else:
            known = ", ".join(f"{c.index} ({c.name})" if c.name != str(c.index) else c.name
                              for c in cells) or "none: set RECNOTIFY_CELLS"
            raise InvalidPublishOption(
                f"{ENV_CELL_TABLE} sends account {account!r} to cell {text!r}, which is not "
                f"a cell; the cells are {known}")
        if account in table and table[account] != index:
            raise InvalidPublishOption(
                f"{ENV_CELL_TABLE} sends account {account!r} to two cells")
        table[account] = index
    return table


def routing_key(account: str | None, realm: str | None, route: str | None) -> str | None:
    """What is hashed: the account, else ``realm:<realm>``, else ``route:<route>``, else None."""
    if account:
        return account
    if realm:
        return f"realm:{realm}"
    if route:
        return f"route:{route}"
    return None


def hash_index(key: str, count: int) -> int:
    """``sha256(key)``'s first 8 bytes (big-endian) modulo ``count``: stable everywhere."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class CellRouter:
    """The cells and the table; :meth:`index_for` says which cell owns an event."""

    cells: tuple[Cell, ...]
    table: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cells:
            raise InvalidPublishOption(f"no cells given ({ENV_CELLS} is empty)")

    @classmethod
    def parse(cls, cells: str | Sequence[str],
              table: str | Mapping[str, int | str] | None = None) -> CellRouter:
        parsed = parse_cells(cells)
        if not parsed:
            raise InvalidPublishOption(f"no cells given ({ENV_CELLS} is empty)")
        return cls(parsed, parse_cell_table(table or "", parsed))

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(c.url for c in self.cells)

    def index_for(self, *, account: str | None = None, realm: str | None = None,
                  route: str | None = None) -> int:
        """The owning cell's index: the table (by account), else the hash, else 0."""
        if account and account in self.table:
            return self.table[account]
        key = routing_key(account, realm, route)
        return hash_index(key, len(self.cells)) if key is not None else 0

    def cell_for(self, *, account: str | None = None, realm: str | None = None,
                 route: str | None = None) -> Cell:
        return self.cells[self.index_for(account=account, realm=realm, route=route)]

    def cell_of_event(self, event: Any) -> Cell:
        """The cell of an :class:`producer.events.Event` or of its JSON as a dict."""
        fields = {name: (event.get(name) if isinstance(event, Mapping)
                         else getattr(event, name, None)) for name in ("account", "realm", "route")}
        return self.cell_for(**fields)


def configured_router(cells: str | Sequence[str] | CellRouter | None,
                      table: str | Mapping[str, int | str] | None, *,
                      explicit_url: str | None, env: Mapping[str, str]) -> CellRouter | None:
    """The router a ``Publisher`` uses: ``cells=`` given, else none when a Redis URL is
    given explicitly, else ``RECNOTIFY_CELLS`` (with ``RECNOTIFY_CELL_TABLE`` unless
    ``table`` is given), else none (one Redis, as before)."""
    if isinstance(cells, CellRouter):
        return cells
    if cells is None:
        if explicit_url or not env.get(ENV_CELLS, "").strip():
            return None
        cells = env[ENV_CELLS]
        if table is None:
            table = env.get(ENV_CELL_TABLE, "")
    return CellRouter.parse(cells, table)
