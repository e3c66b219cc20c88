"""Trace and replay lookups as the history grows (issue 17: "fast at 10^8 rows").

    .venv/bin/python -m bench.history_scale [--rows 1000000] [--small 10000]
                                            [--database-url URL]

Fills two databases with the same shape of history, ``--small`` and ``--rows`` events
(one attempt row each, one dead letter per 100), through the store's own schema
(``Store.upgrade``), then times the queries ``trace``, ``trace --ucid``, dead-letter
replay and ``recnotify replay`` run (the store's own methods, each a few hundred times,
median). Prints each query's median at both sizes and the ratio: an index lookup stays
near 1 x while the table grows 100 x; a scan would grow with it. ``--database-url``
(PostgreSQL: a database this may fill and empty) runs the large one there instead of
SQLite. Rows are inserted with ``executemany`` in batches (the flusher's way), so a
large size takes a while: 10^6 about half a minute here, 10^8 about an hour and ~60 GB.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from workers.store.database import Store
from workers.store.schema import attempts, dead_letters, events

BATCH = 20_000
BASE_MS = 1_700_000_000_000


def event_id(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def fill(store: Store, rows: int) -> None:
    writer = store._writer
    for start in range(0, rows, BATCH):
        chunk = range(start, min(rows, start + BATCH))
        ev = [{"event_id": event_id(n), "entry_id": f"{BASE_MS + n}-0",
               "entry_ms": BASE_MS + n, "entry_seq": 0, "type": "RECORDING_STARTED_EVENT",
               "ucid": f"call-{n // 4}", "stored_at": 1e9 + n,
               "event_json": json.dumps({"id": event_id(n), "params": {"UCID": f"call-{n // 4}"}})}
              for n in chunk]
        at = [{"notification_id": f"msg_{n}", "event_id": event_id(n), "destination": "crm",
               "attempt": 1, "at": 1e9 + n, "status": 200, "error": None, "latency_ms": 1.0,
               "outcome": "delivered", "response": None} for n in chunk]
        dl = [{"notification_id": f"msg_{n}", "event_id": event_id(n), "destination": "crm",
               "event_json": "{}", "attempts_json": "[]", "reason": "gone",
               "created_at": 1e9 + n} for n in chunk if n % 100 == 0]
        with writer.begin() as conn:
            conn.execute(insert(events), ev)
            conn.execute(insert(attempts), at)
            if dl:
                conn.execute(insert(dead_letters), dl)


def queries(store: Store, rows: int) -> dict[str, Callable[[], Any]]:
    pick = random.Random(7)

    def some() -> int:
        return pick.randrange(rows)

    return {
        "trace: the event": lambda: store.get_event_json(event_id(some())),
        "trace: its attempts": lambda: store.list_attempts(event_id=event_id(some())),
        "trace: its dead letters": lambda: store.list_dead_letters(event_id=event_id(some())),
        "trace --ucid": lambda: store.event_ids_for_ucid(f"call-{some() // 4}"),
        "replay: a page of 200 after a cursor": lambda: store.events_after(
            f"{BASE_MS + some()}-0", "+", limit=200),
    }


def timed(call: Callable[[], Any], repeat: int) -> float:
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def measure(url: str, rows: int, repeat: int) -> dict[str, float]:
    store = Store(url)
    store.upgrade()
    started = time.monotonic()
    fill(store, rows)
    print(f"  {rows} events (+ attempts, dead letters) in {time.monotonic() - started:.0f} s",
          flush=True)
    out = {name: timed(call, repeat) for name, call in queries(store, rows).items()}
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rnbench-history-") as tmp:
        small = measure(f"sqlite:///{Path(tmp) / 'small.db'}", args.small, args.repeat)
        large = measure(args.database_url or f"sqlite:///{Path(tmp) / 'large.db'}",
                        args.rows, args.repeat)
    print(f"{'query (median us)':40} {args.small:>10} {args.rows:>12} {'ratio':>7}")
    for name in small:
        print(f"{name:40} {small[name]:10.0f} {large[name]:12.0f} "
              f"{large[name] / small[name]:6.2f}x")
    print(f"(the table grew {args.rows / args.small:.0f} x; an index lookup grows with its "
          "depth, about log n)")
    print(json.dumps({"small": args.small, "rows": args.rows,
                      "ratios": {k: round(large[k] / small[k], 2) for k in small}}))


if __name__ == "__main__":
    main()
