"""A standalone router for benchmarks and tests: ``python -m wisp.dataplane``.

    python -m wisp.dataplane --listen 127.0.0.1:8080 \\
        --route hello.default.localhost=127.0.0.1:9000 [--route HOST=ADDR,ADDR ...] [--uvloop]

Each ``--route`` maps a host to one revision (named after the host) whose ready endpoints are
the given addresses. It prints ``READY <port>`` once listening and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from wisp.dataplane.server import IngressServer
from wisp.dataplane.settings import RouterConfig
from wisp.dataplane.table import RoutingTable


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def build_table(routes: list[str]) -> RoutingTable:
    """A table with one single-revision host per ``HOST=ADDR[,ADDR]`` argument."""
    table = RoutingTable()
    for spec in routes:
        host, _, addrs = spec.partition("=")
        key = f"standalone/{host}"
        table.set_host(host, [(key, 100)])
        table.revision(key).set_endpoints([_addr(a) for a in addrs.split(",") if a])
    return table


async def serve(listen: str, routes: list[str]) -> None:
    host, port = _addr(listen)
    server = IngressServer(build_table(routes), RouterConfig())
    await server.start(host, port)
    print(f"READY {server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(drain_timeout=5.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wisp.dataplane", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--route", action="append", default=[], help="HOST=ADDR[,ADDR…]")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (as wisp serve does)")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.run(serve(args.listen, args.route))
    else:
        asyncio.run(serve(args.listen, args.route))


if __name__ == "__main__":
    main(sys.argv[1:])
