"""A fast HTTP receiver for the benchmark: asyncio, HTTP/1.1 keep-alive, own process.

``/fast/<group>...`` answers 200 at once, ``/slow/<group>...`` after ``--delay-ms``
(100 ms by default) without holding a thread. Each request's arrival time is kept
with its ``m=`` query value (the marker the benchmark puts in every notification)
under ``fast/<group>`` or ``slow/<group>``. Control endpoints:

- ``GET /_count/<kind>/<group>`` -> the number of requests received;
- ``GET /_marks/<kind>/<group>`` -> ``[[marker, arrival_epoch_s], ...]``.

    python -m bench.receiver [--delay-ms 100]   # prints "port <n>" when ready
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Recorder:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.marks: dict[str, list[tuple[str, float]]] = defaultdict(list)

    def control(self, target: str) -> bytes:
        _, what, kind, group = [*target.split("?")[0].split("/"), "", ""][:4]
        marks = self.marks.get(f"{kind}/{group}", [])
        data = json.dumps(len(marks) if what == "_count" else marks).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(data)).encode() + b"\r\n\r\n" + data)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                line, _, rest = head.partition(b"\r\n")
                target = line.split(b" ")[1].decode("latin-1")
                length = 0
                for header in rest.split(b"\r\n"):
                    if header[:15].lower() == b"content-length:":
                        length = int(header[15:])
                if length:
                    await reader.readexactly(length)
                if target.startswith("/_"):
                    writer.write(self.control(target))
                else:
                    parts = urlsplit(target)
                    segments = parts.path.split("/")
                    marker = parse_qs(parts.query).get("m", [""])[0]
                    self.marks[f"{segments[1]}/{segments[2]}"].append((marker, arrived))
                    if segments[1] == "slow":
                        await asyncio.sleep(self.delay_s)
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            writer.close()


async def serve(port: int, delay_s: float) -> None:
    recorder = Recorder(delay_s)
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", port, backlog=4096)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


async def _hammer(port: int, path: str, connections: int, duration_s: float) -> int:
    """Requests answered in ``duration_s`` by ``connections`` keep-alive clients."""
    done = 0
    deadline = time.monotonic() + duration_s
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            writer.write(request)
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            done += 1
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return done


def capacity_per_s(port: int, path: str, connections: int, duration_s: float) -> float:
    """The receiver's measured capacity (a lower bound: the client is Python too)."""
    return asyncio.run(_hammer(port, path, connections, duration_s)) / duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
