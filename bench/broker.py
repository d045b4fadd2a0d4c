"""Broker benchmark: durable ingress throughput and end-to-end delivery latency.

Run: `python bench/broker.py [--events 20000] [--connections 64] [--triggers 1 10] [--rate 500]`.

The broker side (ingress listener + sqlite event log, synchronous=FULL + dispatchers) runs in
its own process on uvloop, i.e. on one core; the load generator and the subscriber run in this
process with raw asyncio streams (an HTTP client library would be the bottleneck, not wisp).

* throughput: `--events` binary-mode events over `--connections` keep-alive connections; every
  202 means the event was durably appended. Reports accepted events/s.
* latency: events paced at `--rate`/s carry their send time; the subscriber records the arrival
  time; p50/p99 of the difference, with 1 and with 10 Triggers (all matching, each delivering).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = b"broker-ingress.localhost"


def _serve(port: int, sub_port: int, triggers: int, data_dir: str, ready: Any) -> None:
    import uvloop
    from prometheus_client import CollectorRegistry

    from wisp.clock import SystemClock
    from wisp.dataplane.server import IngressServer
    from wisp.dataplane.table import RoutingTable
    from wisp.eventing.broker import BrokerIngress
    from wisp.eventing.delivery import DeliveryPolicy
    from wisp.eventing.destinations import HttpSender
    from wisp.eventing.dispatch import TriggerDispatcher, TriggerSpec
    from wisp.eventing.filters import compile_trigger_filter
    from wisp.eventing.log.sqlite import SqliteEventLog
    from wisp.eventing.metrics import EventingMetrics

    async def main() -> None:
        clock, metrics = SystemClock(), EventingMetrics(CollectorRegistry())
        log = SqliteEventLog(Path(data_dir) / "events.db", clock=clock)
        await log.open()
        ingress = BrokerIngress(log, clock, metrics)
        ingress.add_broker("default", "default")
        table = RoutingTable(clock)
        table.set_local_handler(HOST.decode(), ingress.handle)
        server = IngressServer(table)
        await server.start("127.0.0.1", port)
        sender = HttpSender("localhost", ("127.0.0.1", port))
        for i in range(triggers):
            spec = TriggerSpec("default", f"t{i}", "default", f"u{i}", f"http://127.0.0.1:{sub_port}/",
                               compile_trigger_filter({"type": "bench.latency"}, None), DeliveryPolicy(retry=3))
            await TriggerDispatcher(spec, log, sender, ingress.publish, clock, metrics).start()
        ready.set()
        await asyncio.Event().wait()

    uvloop.run(main())


def _request(i: int, kind: bytes, stamp: float) -> bytes:
    body = b'{"n":%d}' % i
    return (b"POST /default/default HTTP/1.1\r\nHost: " + HOST + b"\r\nce-specversion: 1.0\r\nce-id: e%d\r\n"
            b"ce-source: /bench\r\nce-type: " % i + kind + b"\r\nce-benchts: %.6f\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % (stamp, len(body)) + body)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return status


async def throughput(port: int, events: int, connections: int) -> float:
    per = events // connections
    accepted = 0

    async def worker() -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(per):
            writer.write(_request(i, b"bench.throughput", 0.0))
            if await _read_response(reader) == 202:
                accepted += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return accepted / elapsed


class Subscriber:
    """A tiny HTTP/1.1 server that records (send time, arrival time) for each event."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                length, stamp = 0, None
                for line in head.split(b"\r\n"):
                    low = line.lower()
                    if low.startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    elif low.startswith(b"ce-benchts:"):
                        stamp = float(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if stamp is not None:
                    self.samples.append(now - stamp)
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


async def latency(port: int, sub: Subscriber, rate: float, count: int, triggers: int) -> tuple[float, float]:
    sub.samples.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(count):
        writer.write(_request(i, b"bench.latency", time.time()))
        await _read_response(reader)
        await asyncio.sleep(1 / rate)
    deadline = time.monotonic() + 10
    while len(sub.samples) < count * triggers and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    writer.close()
    ms = sorted(s * 1000 for s in sub.samples)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux /proc; 0 elsewhere), to report CPU per delivery."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(args: argparse.Namespace) -> None:
    for triggers in args.triggers:
        sub = Subscriber()
        sub_port = free_port()
        sub_server = await asyncio.start_server(sub.handle, "127.0.0.1", sub_port)
        port = free_port()
        ready = multiprocessing.Event()
        with tempfile.TemporaryDirectory() as data_dir:
            proc = multiprocessing.Process(target=_serve, args=(port, sub_port, triggers, data_dir, ready))
            proc.start()
            try:
                ready.wait(30)
                if triggers == args.triggers[0]:
                    rate = await throughput(port, args.events, args.connections)
                    print(f"ingress throughput (sqlite, durable, {args.connections} connections): "
                          f"{rate:,.0f} events/s accepted")
                    await asyncio.sleep(2)  # let dispatchers skip the throughput events
                cpu, wall = cpu_seconds(proc.pid or 0), time.monotonic()
                p50, p99 = await latency(port, sub, args.rate, args.latency_events, triggers)
                cpu, wall = cpu_seconds(proc.pid or 0) - cpu, time.monotonic() - wall
                print(f"delivery latency with {triggers} trigger(s) at {args.rate:.0f} ev/s: "
                      f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (broker CPU {cpu:.1f} s in {wall:.1f} s)")
            finally:
                proc.terminate()
                proc.join()
                sub_server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--triggers", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--latency-events", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
