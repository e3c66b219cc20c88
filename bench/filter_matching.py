"""What destination filters cost at match time: 100,000 destinations, 10 % of them filtered.

    .venv/bin/python -m bench.filter_matching [--count 100000] [--filtered 0.1] [--rounds 20000]

Builds the same destinations twice, once with a filter on every tenth of them and
once with none, indexes both, and times ``RoutingIndex.match`` for the same events
on both in the same run (interleaved, best of several passes), so the ratio is
what the filters add. Two layouts:

- ``sparse``: every destination on its own route / account / realm (3 candidates per
  event, as in bench.run's matching figure);
- ``dense``: 1,000 scope values per kind, so about 100 candidates per event and
  10 filters evaluated per event: the worst case of a few busy scopes.

Pure CPU, no Redis. Prints a table, then one line of JSON. No asserts on time.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from typing import Any

from producer.events import Event, validate_event
from workers.destinations import parse_destination
from workers.destinations.filters import Filter, compile_filter
from workers.destinations.model import Destination
from workers.destinations.routing import RoutingIndex

TYPES = ("SEGMENT_ENDED_EVENT", "RECORDING_ENDED_EVENT")
KINDS = ("route", "account", "realm")


def filter_for(i: int) -> Filter:
    """A varied filter for the i-th filtered destination (compiled once, as at save)."""
    shapes: list[dict[str, Any]] = [
        {"DURATION": {"$gt": i % 60}},
        {"$or": [{"CALLEDAORS": {"$contains": f"sip:{i % 500}@"}},
                 {"CALLEDAORS": {"$startsWith": "sip:9"}}]},
        {"DURATION": {"$gte": 5, "$lt": 600}, "CALLINGAOR": {"$neq": f"sip:{i}@x"}},
        {"$and": [{"RSS": {"$in": ["rss-1", "rss-2", f"rss-{i % 7}"]}},
                  {"$not": {"ERROR": {"$exists": True}}}]},
    ]
    compiled = compile_filter(shapes[i % len(shapes)], TYPES)
    assert compiled is not None
    return compiled


def destinations(count: int, filtered: float, layout: str) -> tuple[list[Destination],
                                                                     list[Destination]]:
    """(plain, with filters): the same destinations, the second with every
    ``1/filtered``-th one filtered."""
    base = parse_destination({"name": "d", "events": list(TYPES), "scope": "global",
                              "url": "http://127.0.0.1:9/x"})
    every = max(1, round(1 / filtered)) if filtered > 0 else 0
    plain: list[Destination] = []
    with_filters: list[Destination] = []
    for i in range(count):
        kind = KINDS[i % 3]
        value = i // 3 if layout == "sparse" else (i // 3) % 1000
        dest = replace(base, name=f"d{i}", scope=f"{kind}:{kind[0]}{value}")
        plain.append(dest)
        with_filters.append(replace(dest, filter=filter_for(i)) if every and i % every == 0
                            else dest)
    return plain, with_filters


def events(layout: str, count: int, n: int = 64) -> list[Event]:
    rng = random.Random(7)
    top = count // 3 if layout == "sparse" else 1000
    out = []
    for k in range(n):
        out.append(validate_event({
            "type": TYPES[k % 2], "route": f"r{rng.randrange(top)}",
            "account": f"a{rng.randrange(top)}", "realm": f"r{rng.randrange(top)}",
            "params": {"UCID": f"u{k}", "DURATION": str(rng.randrange(120)),
                       "CALLEDAORS": [f"sip:{rng.randrange(1000)}@pbx"],
                       "CALLINGAOR": "sip:1@x", "RSS": f"rss-{rng.randrange(4)}"}}))
    return out


def time_per_event_us(index: RoutingIndex[Destination], evs: list[Event], rounds: int) -> float:
    per_pass = max(1, rounds // len(evs))
    started = time.perf_counter()
    for _ in range(per_pass):
        for ev in evs:
            index.match(ev)
    return (time.perf_counter() - started) / (per_pass * len(evs)) * 1e6


def measure(count: int, filtered: float, rounds: int, layout: str) -> dict[str, Any]:
    started = time.perf_counter()
    plain, with_filters = destinations(count, filtered, layout)
    built_s = time.perf_counter() - started
    plain_index = RoutingIndex.build(plain)
    started = time.perf_counter()
    filtered_index = RoutingIndex.build(with_filters)
    index_s = time.perf_counter() - started
    evs = events(layout, count)
    candidates = sum(len(plain_index.match(e)) for e in evs) / len(evs)
    kept = sum(len(filtered_index.match(e)) for e in evs) / len(evs)
    plain_us, filtered_us = [], []
    for _ in range(5):  # interleaved passes: both see the same machine noise
        plain_us.append(time_per_event_us(plain_index, evs, rounds))
        filtered_us.append(time_per_event_us(filtered_index, evs, rounds))
    best_plain, best_filtered = min(plain_us), min(filtered_us)
    return {"layout": layout, "destinations": count, "filtered": len(filtered_index.filters),
            "candidates_per_event": round(candidates, 1),
            "matched_per_event": round(kept, 1),
            "plain_us": round(best_plain, 2), "filtered_us": round(best_filtered, 2),
            "ratio": round(best_filtered / best_plain, 2),
            "build_s": round(built_s, 2), "index_build_s": round(index_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--filtered", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    rows = [measure(args.count, args.filtered, args.rounds, layout)
            for layout in ("sparse", "dense")]
    print(f"{'layout':8} {'dests':>8} {'filtered':>8} {'cand/ev':>8} {'matched':>8} "
          f"{'no filters':>11} {'filters':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['layout']:8} {r['destinations']:>8,} {r['filtered']:>8,} "
              f"{r['candidates_per_event']:>8} {r['matched_per_event']:>8} "
              f"{r['plain_us']:>8.2f} us {r['filtered_us']:>6.2f} us {r['ratio']:>5.2f}x")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
