"""Per-delivery cost of ``Deliverer.run`` in-process, without Celery or thread contention.

    .venv/bin/python -m bench.profile_deliver [count]

Delivers ``count`` notifications one after another to a fast receiver, prints the
wall and CPU time per delivery and the Redis commands each one sends, then a
pyinstrument profile of the loop (``pyinstrument`` from PyPI).
"""

from __future__ import annotations

import sys
import time

import redis
from pyinstrument import Profiler

from bench.cluster import Cluster
from producer.events import validate_event
from workers.taskqueue.runtime import Runtime


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    cluster = Cluster("redis://127.0.0.1:6379/0")
    try:
        rc = cluster.start_receiver()
        prefix = cluster.prefix("pdel")
        factory = cluster.recnotify(prefix, "destinations:\n" + cluster.destination(
            "fast", "route:fast", rc.url("fast", "d")))
        runtime = Runtime(factory.settings)
        deliverer = runtime.deliverer
        client = redis.Redis.from_url(cluster.redis_url)
        ids = []
        for i in range(count + 20):
            event = validate_event({"type": "RECORDING_STARTED_EVENT", "route": "fast",
                                    "params": {"UCID": str(i)}})
            client.set(factory.settings.keys.event(event.id), event.to_json())
            ids.append(event.id)
        for event_id in ids[:20]:  # warm: connections, caches
            deliverer.run(event_id, "fast")
        client.config_resetstat()
        profiler = Profiler(interval=0.0005)
        wall, cpu = time.perf_counter(), time.process_time()
        profiler.start()
        for event_id in ids[20:]:
            deliverer.run(event_id, "fast")
        profiler.stop()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stats = client.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        print(f"{count} deliveries: {wall / count * 1000:.2f} ms wall, "
              f"{cpu / count * 1000:.2f} ms CPU (client side) each")
        print("Redis commands per delivery (whole server, others' too: read as an upper bound): "
              + ", ".join(f"{k} {v / count:.1f}" for k, v in sorted(calls.items())
                          if v >= count / 2))
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
