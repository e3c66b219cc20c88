"""Profile one recnotify worker under load with py-spy (``py-spy`` from PyPI).

    .venv/bin/python -m bench.profile_worker [seconds] [out.txt] [--gil] [--ordered]

Starts a receiver and one worker, publishes to a fast destination for ``seconds``
while ``py-spy record --format raw`` samples the worker (all threads, GIL-holding
samples only), then prints the top functions by own and cumulative samples.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.cluster import Cluster

try:
    positional = [a for a in sys.argv[1:] if not a.startswith("--")]
    seconds = int(positional[0]) if positional else 15
    out = positional[1] if len(positional) > 1 else "/tmp/rnbench-profile.txt"
except ValueError:
    raise SystemExit("usage: python -m bench.profile_worker [seconds] [out.txt]") from None


#: ``--gil``: only samples of the thread holding the GIL (CPU work, not waits).
GIL = ["--gil"] if "--gil" in sys.argv else []
#: ``--ordered``: an ordered destination, 6 events per recording (issue 8's case).
ORDERED = "--ordered" in sys.argv
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "100"))


def cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def top(path: str, limit: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    print(f"{samples} samples\n-- own time")
    for frame, n in own.most_common(limit):
        print(f"{n / samples:6.1%}  {frame}")
    print("-- cumulative (recnotify / celery / kombu / redis / urllib3 frames)")
    shown = 0
    for frame, n in total.most_common():
        if any(k in frame for k in ("workers/", "celery/", "kombu/", "redis/", "urllib3/",
                                    "logging/", "json/")):
            print(f"{n / samples:6.1%}  {frame}")
            shown += 1
            if shown >= limit:
                break


def main() -> None:
    cluster = Cluster("redis://127.0.0.1:6379/0")
    try:
        rc = cluster.start_receiver()
        prefix = cluster.prefix("prof")
        dest = cluster.destination("fast", "route:fast", rc.url("fast", "p"))
        if ORDERED:
            dest += "    ordered: true\n"
        factory = cluster.recnotify(prefix, "destinations:\n" + dest)
        proc = factory.start(concurrency=CONCURRENCY, node="prof")
        publisher = factory.publisher()
        stop = threading.Event()
        sent = 0

        def publish() -> None:
            nonlocal sent
            while not stop.is_set():
                publisher.publish("RECORDING_STARTED_EVENT", route="fast",
                                  params={"UCID": str(sent // 6 if ORDERED else sent)})
                sent += 1
                if sent - rc.count("fast/p") > 500:
                    time.sleep(0.05)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        time.sleep(2)
        before = rc.count("fast/p")
        cpu_before = cpu_s(proc.pid)
        subprocess.run([sys.executable.replace("python", "py-spy"), "record", "--pid",
                        str(proc.pid), "--duration", str(seconds), "--rate", "200",
                        "--format", "raw", "--output", out, "--nonblocking", *GIL], check=True,
                       capture_output=True)
        rate = (rc.count("fast/p") - before) / seconds
        user, system = (after - before_ for after, before_ in zip(cpu_s(proc.pid), cpu_before,
                                                                   strict=True))
        cpu = (user + system) / seconds
        stop.set()
        thread.join()
        print(f"delivered {rate:.0f}/s while profiling (1 worker, {CONCURRENCY} threads); "
              f"worker CPU {cpu:.0%} of a core ({system / (user + system):.0%} in the kernel) = "
              f"{cpu / max(rate, 1) * 1000:.2f} ms CPU per notification")
    finally:
        cluster.close()
    top(out)


if __name__ == "__main__":
    main()
