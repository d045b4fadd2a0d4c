"""The per-endpoint connection pool: bounded dials, FIFO waiters, hand-off of released connections."""

from __future__ import annotations

import asyncio

import pytest

import wisp.dataplane.upstream as upstream
from wisp.dataplane.upstream import ConnectionPool, UpstreamConnection

from .test_protocol import FakeTransport


class Waiter:
    def __init__(self, name: int) -> None:
        self.name = name
        self.conn: UpstreamConnection | None = None
        self.error: BaseException | None = None
        self.gave_up = False

    def wants_connection(self) -> bool:
        return not self.gave_up and self.conn is None and self.error is None

    def pool_ready(self, conn: UpstreamConnection) -> None:
        self.conn = conn

    def pool_failed(self, exc: BaseException) -> None:
        self.error = exc


class Dialer:
    """Stands in for ``open_connection``: each dial blocks until the test completes or fails it."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[UpstreamConnection]] = []
        self.most = 0

    async def __call__(self, host: str, port: int, timeout: float) -> UpstreamConnection:
        fut: asyncio.Future[UpstreamConnection] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        self.most = max(self.most, sum(not f.done() for f in self.pending))
        return await fut

    def complete(self) -> UpstreamConnection:
        conn = UpstreamConnection()
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        next(f for f in self.pending if not f.done()).set_result(conn)
        return conn

    def fail(self) -> None:
        next(f for f in self.pending if not f.done()).set_exception(ConnectionRefusedError())


@pytest.fixture
def dialer(monkeypatch: pytest.MonkeyPatch) -> Dialer:
    d = Dialer()
    monkeypatch.setattr(upstream, "open_connection", d)
    return d


def wait(pool: ConnectionPool, w: Waiter, limit: int = 3) -> None:
    pool.wait(w, max_connecting=limit, connect_timeout=5.0, high_water=65536)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_dials_in_progress_are_bounded_and_waiters_served_in_order(dialer: Dialer) -> None:
    pool = ConnectionPool(address=("127.0.0.1", 1))
    waiters = [Waiter(i) for i in range(10)]
    for w in waiters:
        wait(pool, w)
    await settle()
    assert pool.dialing == 3 and len(dialer.pending) == 3
    dialer.complete()
    await settle()
    assert waiters[0].conn is not None and all(w.conn is None for w in waiters[1:])
    assert pool.dialing == 3 and dialer.most == 3  # the freed slot started the next dial
    # A connection released by a finished request goes to the oldest waiter, not to the idle list.
    first = waiters[0].conn
    pool.put(first)
    await settle()
    assert waiters[1].conn is first and pool.idle == []


async def test_a_waiter_that_gave_up_is_skipped(dialer: Dialer) -> None:
    pool = ConnectionPool(address=("127.0.0.1", 1))
    a, b = Waiter(0), Waiter(1)
    wait(pool, a, limit=1)
    wait(pool, b, limit=1)
    await settle()
    a.gave_up = True
    conn = dialer.complete()
    await settle()
    assert b.conn is conn and a.conn is None


async def test_failed_dial_fails_one_waiter_only_when_nothing_else_can_serve(dialer: Dialer) -> None:
    pool = ConnectionPool(address=("127.0.0.1", 1))
    waiters = [Waiter(i) for i in range(3)]
    for w in waiters:
        wait(pool, w, limit=1)
    await settle()
    dialer.fail()  # no open connection at all: the oldest request gets the error
    await settle()
    assert isinstance(waiters[0].error, ConnectionRefusedError) and waiters[1].error is None
    conn = dialer.complete()  # the next dial was started for the rest
    await settle()
    assert waiters[1].conn is conn
    dialer.fail()  # now one connection is open (busy): the last waiter keeps waiting for it
    await settle()
    assert waiters[2].error is None and waiters[2].conn is None
    pool.put(conn)
    await settle()
    assert waiters[2].conn is conn
    pool.clear()


async def test_closed_pool_still_serves_its_waiters_but_keeps_nothing_idle(dialer: Dialer) -> None:
    pool = ConnectionPool(address=("127.0.0.1", 1))
    w = Waiter(0)
    wait(pool, w)
    await settle()
    pool.close()
    conn = dialer.complete()
    await settle()
    assert w.conn is conn
    pool.put(conn)
    assert pool.idle == [] and conn.dead
