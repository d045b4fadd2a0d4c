"""The routing table: hosts → weighted revision splits, revisions → ready endpoints.

Controllers write it (``set_host``, ``revision(key).set_endpoints``); the proxy reads it on every
request. Reads are plain dict lookups and one random draw so the hot path stays cheap. A revision
with no ready endpoint makes ``acquire`` wait — this is where requests are held while the
autoscaler brings a revision up from zero (the activator's job in Knative). The same wait enforces
``containerConcurrency``: with CC > 0 an endpoint takes at most CC requests and the rest queue, in
arrival order, up to a bound (queue-proxy's breaker and the activator's throttler, in one place).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from wisp.autoscaler.window import Stat
from wisp.clock import Clock, SystemClock
from wisp.dataplane.errors import AcquireTimeout, QueueFull, RevisionGone
from wisp.dataplane.headers import normalize_host
from wisp.dataplane.local import LocalRequest, LocalResponse
from wisp.dataplane.meter import ConcurrencyMeter, observe_cold_start
from wisp.dataplane.upstream import ConnectionPool

LocalHandler = Callable[[LocalRequest], Awaitable[LocalResponse]]
DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_MAX_WAITERS = 10_000  # the activator's per-revision queue depth
QUEUE_DEPTH_PER_SLOT = 10  # queue-proxy admits CC in flight plus 10 x CC waiting per instance


@dataclass(slots=True)
class RevisionMetrics:
    """Per-revision counters, read by the metrics exporter and the autoscaler's stat scraper."""

    requests: int = 0
    in_flight: int = 0  # accepted and not finished, waiting ones included
    queued: int = 0
    cold_starts: int = 0  # requests that waited for a revision with no ready instance
    cold_start_seconds: float = 0.0  # their total wait
    responses_1xx: int = 0
    responses_2xx: int = 0
    responses_3xx: int = 0
    responses_4xx: int = 0
    responses_5xx: int = 0

    def record_status(self, status: int) -> None:
        """Count one finished request under its status class."""
        cls = status // 100
        if cls == 2:
            self.responses_2xx += 1
        elif cls == 5:
            self.responses_5xx += 1
        elif cls == 4:
            self.responses_4xx += 1
        elif cls == 3:
            self.responses_3xx += 1
        else:
            self.responses_1xx += 1


class Endpoint:
    """One ready instance address, with its in-flight count and idle connection pool."""

    __slots__ = ("host", "in_flight", "pool", "port")

    def __init__(self, host: str, port: int, max_idle: int = 256) -> None:
        self.host = host
        self.port = port
        self.in_flight = 0
        self.pool = ConnectionPool(max_idle, address=(host, port))

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"Endpoint({self.host}:{self.port}, in_flight={self.in_flight})"


class RevisionTarget:
    """The set of ready instances of one revision and the requests waiting for one.

    ``on_demand`` is called (with the revision key) whenever a request finds no ready endpoint, so
    the autoscaler can start an instance; the request itself waits in ``acquire``.

    Balancing follows the activator (spec §4.2): CC 0 takes the less loaded of two random
    endpoints; CC 1-3 the first endpoint with a free slot; CC > 3 round-robins over endpoints with
    a free slot. Waiting requests are served first-come first-served: a slot freed by ``release`` or
    a new endpoint is handed straight to the oldest waiter, and new arrivals never overtake it.
    """

    def __init__(
        self,
        key: str,
        *,
        clock: Clock | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        max_idle_per_endpoint: int = 256,
    ) -> None:
        self.key = key
        self.timeout_seconds = timeout_seconds
        # 0 disables each: responseStartTimeoutSeconds and idleTimeoutSeconds of the revision.
        self.response_start_timeout = 0.0
        self.idle_timeout = 0.0
        self.max_waiters = max_waiters
        self.container_concurrency = 0
        # Proxy mode (the activator in the path): the queue holds up to `max_waiters`. In Serve mode
        # with CC > 0 the bound is queue-proxy's, 10 x CC per ready instance.
        self.activator_in_path = True
        self.on_demand: Callable[[str], None] | None = None
        self.metrics = RevisionMetrics()
        self._clock = clock or SystemClock()
        # Read twice per request: skip the SystemClock method layer when it is the real clock.
        self._monotonic: Callable[[], float] = (
            time.monotonic if type(self._clock) is SystemClock else self._clock.monotonic)
        self.meter = ConcurrencyMeter(self._monotonic())
        self._max_idle = max_idle_per_endpoint
        self._endpoints: list[Endpoint] = []
        self._waiters: deque[asyncio.Future[Endpoint | None]] = deque()
        self._rr = 0
        self._removed = False
        self._retired: dict[tuple[str, int], Endpoint] = {}  # left rotation with requests in flight

    @property
    def endpoints(self) -> list[Endpoint]:
        """The current ready endpoints (do not mutate)."""
        return self._endpoints

    def set_endpoints(self, endpoints: list[tuple[str, int]]) -> None:
        """Replace the ready set; requests only ever go to these. Waiting requests get served.

        Endpoints that stay keep their counters and warm connections; dropped ones close their
        idle connections (in-flight requests on them finish normally).
        """
        current = {ep.address: ep for ep in self._endpoints}
        fresh: list[Endpoint] = []
        for host, port in dict.fromkeys(endpoints):
            ep = current.pop((host, port), None)
            if ep is None:
                ep = self._retired.pop((host, port), None) or Endpoint(host, port, self._max_idle)
                ep.pool.closed = False
            fresh.append(ep)
        for gone in current.values():
            gone.pool.close()
            if gone.in_flight:
                self._retired[gone.address] = gone
        self._endpoints = fresh
        if fresh:
            self._dispatch()

    def in_flight(self, address: tuple[str, int]) -> int:
        """Requests still running on `address`, in rotation or not (what a drain waits for)."""
        count = sum(ep.in_flight for ep in self._endpoints if ep.address == address)
        retired = self._retired.get(address)
        if retired is not None:
            if retired.in_flight == 0:
                del self._retired[address]
            count += retired.in_flight
        return count

    # -- load accounting (the gate's stats) -------------------------------------------------------
    def begin(self) -> None:
        """A request for this revision was accepted (it may still have to wait for a slot)."""
        metrics = self.metrics
        metrics.requests += 1
        metrics.in_flight += 1
        self.meter.arrive(self._monotonic())

    def end(self) -> None:
        """The request counted by ``begin`` is over."""
        self.metrics.in_flight -= 1
        self.meter.leave(self._monotonic())

    def finish(self, ep: Endpoint | None, status: int) -> None:
        """``release(ep)`` (when a slot was held), ``end()`` and count ``status`` (when one was
        sent) in one call: the proxy does all three once per request."""
        if ep is not None:
            ep.in_flight -= 1
            if self._waiters:
                self._dispatch()
        metrics = self.metrics
        metrics.in_flight -= 1
        self.meter.leave(self._monotonic())
        if status:
            metrics.record_status(status)

    def sample_stat(self) -> Stat:
        """Close the current stats period (the autoscaler calls this once a second)."""
        return self.meter.sample(self._monotonic())

    def record_cold_start(self, seconds: float) -> None:
        """A request waited `seconds` because the revision had no ready instance when it arrived."""
        self.metrics.cold_starts += 1
        self.metrics.cold_start_seconds += seconds
        observe_cold_start(self.key, seconds)

    def queue_limit(self) -> int:
        """How many requests may wait: the activator's bound, or queue-proxy's when it is not in path."""
        cc = self.container_concurrency
        if self.activator_in_path or cc <= 0:
            return self.max_waiters
        return QUEUE_DEPTH_PER_SLOT * cc * max(1, len(self._endpoints))

    # -- picking an endpoint ----------------------------------------------------------------------
    def _pick(self, exclude: Endpoint | None) -> Endpoint | None:
        """The endpoint the balancing policy chooses, or None when none has a free slot."""
        eps = self._endpoints
        n = len(eps)
        if n == 0:
            return None
        cc = self.container_concurrency
        if cc <= 0:
            if n == 1:
                return eps[0]
            a, b = random.sample(eps, 2)
            ep = a if a.in_flight <= b.in_flight else b
            if ep is exclude:
                ep = b if ep is a else a
            return ep
        start = self._rr % n if cc > 3 else 0
        for i in range(n):
            ep = eps[(start + i) % n]
            if ep.in_flight < cc and ep is not exclude:
                if cc > 3:
                    self._rr = (start + i + 1) % n
                return ep
        return None

    def try_acquire(self, exclude: Endpoint | None = None) -> Endpoint | None:
        """Take a slot now without waiting, or None (no endpoint, no free slot, or others queued).

        ``exclude`` (a retry after a failed attempt on that endpoint) prefers another endpoint; a
        retry may take a free slot ahead of the queue, since it was admitted before the waiters.
        """
        if exclude is None and self._waiters:
            return None  # first come, first served
        ep = self._pick(exclude)
        if ep is not None:
            ep.in_flight += 1
        return ep

    async def acquire(self, timeout: float) -> Endpoint:
        """An endpoint to send one request to, waiting up to ``timeout`` seconds for a slot.

        Raises ``AcquireTimeout`` (→ 504), ``QueueFull`` (→ 503) or ``RevisionGone`` (→ 503).
        """
        ep = self.try_acquire()
        if ep is not None:
            return ep
        if self._removed:
            raise RevisionGone(self.key)
        if not self._endpoints:
            self.notify_demand()
        limit = self.queue_limit()
        if self.metrics.queued >= limit:
            raise QueueFull(self.key, limit)
        self.metrics.queued += 1
        deadline = asyncio.ensure_future(self._clock.sleep(timeout))
        try:
            return await self._wait_for_slot(deadline, timeout)
        finally:
            deadline.cancel()
            self.metrics.queued -= 1

    async def _wait_for_slot(self, deadline: asyncio.Future[None], timeout: float) -> Endpoint:
        loop = asyncio.get_running_loop()
        front = False
        while True:
            fut: asyncio.Future[Endpoint | None] = loop.create_future()
            self._enqueue(fut, front)
            self._dispatch()
            try:
                await asyncio.wait((fut, deadline), return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                self._abandon(fut)
                raise
            if not fut.done():
                fut.cancel()
                if self._removed:
                    raise RevisionGone(self.key)
                raise AcquireTimeout(self.key, timeout)
            ep = fut.result()
            if ep is None:
                raise RevisionGone(self.key)
            if not ep.pool.closed:
                return ep
            # Handed an endpoint that left rotation before this task ran: give it back, wait again
            # at the head of the queue.
            self.release(ep)
            front = True

    def _enqueue(self, fut: asyncio.Future[Endpoint | None], front: bool) -> None:
        # Cancelled waiters are removed lazily; compact when they dominate the queue.
        if len(self._waiters) > 2 * self.metrics.queued + 16:
            self._waiters = deque(w for w in self._waiters if not w.done())
        if front:
            self._waiters.appendleft(fut)
        else:
            self._waiters.append(fut)

    def _abandon(self, fut: asyncio.Future[Endpoint | None]) -> None:
        """The waiting task was cancelled: return a slot it may have been handed meanwhile."""
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            ep = fut.result()
            if ep is not None:
                self.release(ep)

    def _dispatch(self) -> None:
        """Hand free slots to waiters, oldest first."""
        waiters = self._waiters
        while waiters:
            fut = waiters[0]
            if fut.done():
                waiters.popleft()
                continue
            ep = self._pick(None)
            if ep is None:
                return
            ep.in_flight += 1
            waiters.popleft()
            fut.set_result(ep)

    def release(self, ep: Endpoint) -> None:
        """Give back the slot taken by ``acquire``/``try_acquire``; the oldest waiter may take it."""
        ep.in_flight -= 1
        if self._waiters:
            self._dispatch()

    def notify_demand(self) -> None:
        """Poke the autoscaler: a request arrived and nothing is ready."""
        hook = self.on_demand
        if hook is not None:
            hook(self.key)

    def close(self) -> None:
        """Forget every endpoint and fail waiting requests (the revision was deleted)."""
        self._removed = True
        for ep in self._endpoints:
            ep.pool.close()
        self._endpoints = []
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


@dataclass(frozen=True, slots=True)
class HostRoute:
    """One host's traffic: a percent split over revision keys plus tag → key for header routing."""

    keys: tuple[str, ...]
    cumulative: tuple[int, ...]
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, split: list[tuple[str, int]], tags: Mapping[str, str] | None = None) -> HostRoute:
        """Validate a split (percents in 0..100 summing to 100; 0 % entries get no traffic)."""
        keys: list[str] = []
        cumulative: list[int] = []
        total = 0
        for key, percent in split:
            if not 0 <= percent <= 100:
                raise ValueError(f"percent for {key!r} must be within 0..100, got {percent}")
            if percent:
                total += percent
                keys.append(key)
                cumulative.append(total)
        if split and total != 100:
            raise ValueError(f"traffic percents must sum to 100, got {total}")
        return cls(tuple(keys), tuple(cumulative), dict(tags or {}))

    def choose(self, draw: float) -> str | None:
        """The revision key for a uniform draw in [0, 100); None when the host has no split."""
        if not self.keys:
            return None
        i = bisect.bisect_right(self.cumulative, draw)
        return self.keys[min(i, len(self.keys) - 1)]

    def pick(self, tag: str | None) -> str | None:
        """Tag header routing first (unknown tags fall through), then a fresh weighted draw."""
        if tag is not None:
            key = self.tags.get(tag)
            if key is not None:
                return key
        if len(self.keys) == 1:
            return self.keys[0]
        return self.choose(random.random() * 100.0)


class RoutingTable:
    """Host → split, key → revision, host → in-process handler. Written by controllers."""

    def __init__(self, clock: Clock | None = None, *, max_idle_per_endpoint: int = 256) -> None:
        self._clock = clock or SystemClock()
        self._max_idle = max_idle_per_endpoint
        self._hosts: dict[str, HostRoute] = {}
        self._revisions: dict[str, RevisionTarget] = {}
        self._local: dict[str, LocalHandler] = {}

    def set_host(
        self, host: str, split: list[tuple[str, int]], *, tags: dict[str, str] | None = None,
    ) -> None:
        """Route ``host`` (any case, port ignored) by a weighted split over revision keys."""
        self._hosts[normalize_host(host)] = HostRoute.build(split, tags)

    def remove_host(self, host: str) -> None:
        self._hosts.pop(normalize_host(host), None)

    def hosts(self) -> dict[str, HostRoute]:
        """A snapshot of the host routes (for status pages and tests)."""
        return dict(self._hosts)

    def route(self, host: str) -> HostRoute | None:
        """The route for an already-normalised host."""
        return self._hosts.get(host)

    def revision(self, key: str) -> RevisionTarget:
        """The target for ``key`` ("ns/name"), created on demand with no endpoints."""
        target = self._revisions.get(key)
        if target is None:
            target = RevisionTarget(key, clock=self._clock, max_idle_per_endpoint=self._max_idle)
            self._revisions[key] = target
        return target

    def revisions(self) -> dict[str, RevisionTarget]:
        return dict(self._revisions)

    def remove_revision(self, key: str) -> None:
        target = self._revisions.pop(key, None)
        if target is not None:
            target.close()

    def set_local_handler(self, host: str, handler: LocalHandler | None) -> None:
        """Serve ``host`` in-process (broker ingress and the like); ``None`` removes it."""
        name = normalize_host(host)
        if handler is None:
            self._local.pop(name, None)
        else:
            self._local[name] = handler

    def local_handler(self, host: str) -> LocalHandler | None:
        """The in-process handler for an already-normalised host."""
        return self._local.get(host) if self._local else None

    def close(self) -> None:
        """Close every pooled connection (server shutdown)."""
        for target in self._revisions.values():
            for ep in target.endpoints:
                ep.pool.clear()
