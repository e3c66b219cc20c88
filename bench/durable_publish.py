"""The cost of a durable publish (XADD + WAIT 1) against a plain one, in the same run.

A real Sentinel setup (tests/sentinel.py: primary, one replica, three sentinels on
loopback) and ``producer.Publisher`` on its ``sentinel://`` URL. Rounds alternate
plain and durable so both see the same machine load:

- latency: ``--count`` publishes one at a time (median, p99 in ms);
- throughput: ``--threads`` threads sharing one Publisher for ``--seconds`` (events/s).

Prints both, the durable/plain ratios, and a JSON line.

    python -m bench.durable_publish [--count 2000] [--threads 8] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from producer import Publisher
from producer.events import Event, validate_event
from tests.sentinel import SentinelSetup


def _event(n: int) -> Event:
    return validate_event({"type": "RECORDING_STARTED_EVENT", "route": "bench",
                           "params": {"UCID": str(n)}})


def latency_ms(publisher: Publisher, count: int) -> list[float]:
    events = [_event(n) for n in range(count)]
    out = []
    for event in events:
        started = time.perf_counter()
        publisher.publish_event(event)
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def throughput(publisher: Publisher, threads: int, seconds: float) -> float:
    done = [0] * threads
    stop = threading.Event()

    def run(index: int) -> None:
        n = 0
        while not stop.is_set():
            publisher.publish_event(_event(n))
            n += 1
        done[index] = n

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = SentinelSetup(Path(tmp)).start()
        try:
            plain = Publisher(setup.url, key_prefix="rnbench-durable:")
            durable = Publisher(setup.url, key_prefix="rnbench-durable:", durable_replicas=1)
            latency_ms(plain, 200), latency_ms(durable, 200)  # warm-up
            lat: dict[str, list[float]] = {"plain": [], "durable": []}
            rate: dict[str, list[float]] = {"plain": [], "durable": []}
            for _ in range(args.rounds):
                for name, publisher in (("plain", plain), ("durable", durable)):
                    lat[name] += latency_ms(publisher, args.count)
                    rate[name].append(throughput(publisher, args.threads, args.seconds))
                    setup.primary_client().delete("rnbench-durable:events")
        finally:
            setup.stop()
    result: dict[str, float] = {}
    for name in ("plain", "durable"):
        values = sorted(lat[name])
        result[f"{name}_median_ms"] = round(statistics.median(values), 3)
        result[f"{name}_p99_ms"] = round(values[int(len(values) * 0.99) - 1], 3)
        result[f"{name}_per_s"] = round(statistics.median(rate[name]), 1)
    result["latency_ratio"] = round(result["durable_median_ms"] / result["plain_median_ms"], 2)
    result["throughput_ratio"] = round(result["durable_per_s"] / result["plain_per_s"], 2)
    print(f"one at a time: plain median {result['plain_median_ms']} ms (p99 "
          f"{result['plain_p99_ms']}), durable median {result['durable_median_ms']} ms (p99 "
          f"{result['durable_p99_ms']}): durable/plain latency x{result['latency_ratio']}")
    print(f"{args.threads} threads: plain {result['plain_per_s']}/s, durable "
          f"{result['durable_per_s']}/s: durable/plain throughput x{result['throughput_ratio']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
