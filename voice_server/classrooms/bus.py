"""The event bus between server processes: classroom events out to teachers' consoles, teachers'
commands in to the process that runs the student's session.

Two implementations behind one protocol:
- `LocalBus` fans a message out to every subscriber in this process. Enough for one process (the
  SQLite deployments, which cannot run several processes on one database anyway).
- `PostgresBus` uses PostgreSQL's LISTEN/NOTIFY, so every process on the same database hears every
  message, its own included. No broker to run: the database is already there.

Both deliver to the publisher's own process, both refuse what NOTIFY would refuse (an invalid
channel, a payload of 8000 bytes or more, something that is not JSON), so a mistake made on SQLite
does not wait for PostgreSQL to show. Delivery is at most once: a subscriber that falls behind
loses its oldest messages, and messages sent while the listening connection is down are lost, so
consumers treat events as updates to a state they can fetch again (the console's snapshot).

    async with bus.subscribe("classroom_events") as events:
        async for message in events:  # dicts
            ...
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from types import TracebackType
from typing import Any, Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (in the default build).
MAX_PAYLOAD_BYTES = 8000
# Our channels are prefixed in PostgreSQL so they cannot meet another application's on a shared
# database. With the prefix they must still fit an identifier (63 bytes).
PG_PREFIX = "convergio_"
_CHANNEL = re.compile(r"[a-z][a-z0-9_]{0,52}")
QUEUE_SIZE = 1000
LISTENER_NAME = "convergio-event-bus"


def encode(channel: str, message: dict[str, Any]) -> str:
    """The payload for `message`, or ValueError saying why it cannot be sent on `channel`."""
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(f"event bus channel {channel!r} is not a lower-case identifier of 1..53 characters")
    if not isinstance(message, dict):
        raise ValueError(f"event bus messages are JSON objects, not {type(message).__name__}")
    try:
        payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event bus message on {channel!r} is not JSON: {exc}") from exc
    size = len(payload.encode())
    if size >= MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"event bus message on {channel!r} is {size} bytes; PostgreSQL NOTIFY takes under "
            f"{MAX_PAYLOAD_BYTES}: send ids and short text (a transcript line is cut to 2000 characters)"
        )
    return payload


def asyncpg_dsn(database_url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy URL (`postgresql+asyncpg://...` -> `postgresql://...`)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Subscription:
    """One subscriber's messages on one channel: an async context manager to async-iterate.

    Its queue is bounded: when the subscriber falls behind, the oldest message is dropped (and
    counted in `dropped`), so a stalled console never holds up a student's session. Iteration ends
    when the bus closes."""

    def __init__(self, bus: _FanOut, channel: str, queue_size: int) -> None:
        self.channel = channel
        self.dropped = 0
        self._bus = bus
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(queue_size)
        self._closed = False  # no more deliveries; the end marker (None) is queued
        self._ended = False  # the iterator has reached the end marker

    async def __aenter__(self) -> Subscription:
        await self._bus._attach(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()
        await self._bus._detach(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._ended:
            raise StopAsyncIteration
        message = await self._queue.get()
        if message is None:
            self._ended = True
            raise StopAsyncIteration
        return message

    def _deliver(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        self._put(message)

    def _close(self) -> None:
        if not self._closed:
            self._put(None)  # after what is queued: a subscriber still reads those first
            self._closed = True

    def _put(self, item: dict[str, Any] | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            self._bus.dropped += 1
            if self.dropped == 1:  # once per subscriber: a stalled one would flood the log
                log.warning("a subscriber to %s falls behind; its oldest messages are dropped", self.channel)
        self._queue.put_nowait(item)


class EventBus(Protocol):
    dropped: int

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def publish(self, channel: str, message: dict[str, Any]) -> None: ...
    def subscribe(self, channel: str) -> Subscription: ...


class _FanOut:
    """The part both buses share: who subscribes to what, and handing a payload to each of them."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.dropped = 0  # messages dropped by slow subscribers, all channels, since start
        self._queue_size = queue_size
        self._subscribers: dict[str, list[Subscription]] = {}
        self._started = False
        self._closed = False

    def subscribe(self, channel: str) -> Subscription:
        encode(channel, {})  # validates the channel now rather than on entry
        return Subscription(self, channel, self._queue_size)

    def _check_open(self) -> None:
        if not self._started:
            raise RuntimeError("the event bus is not started (await bus.start() first)")
        if self._closed:
            raise RuntimeError("the event bus is closed")

    def _add(self, sub: Subscription) -> None:
        self._subscribers.setdefault(sub.channel, []).append(sub)

    def _remove(self, sub: Subscription) -> bool:
        """Unregisters `sub`; True when its channel has no subscriber left."""
        subs = self._subscribers.get(sub.channel, [])
        if sub in subs:
            subs.remove(sub)
        if subs:
            return False
        self._subscribers.pop(sub.channel, None)
        return True

    def _fan_out(self, channel: str, payload: str) -> None:
        for sub in tuple(self._subscribers.get(channel, ())):
            # Each subscriber decodes its own copy: one that edits a message cannot change another's.
            sub._deliver(json.loads(payload))

    def _end_subscriptions(self) -> None:
        for subs in self._subscribers.values():
            for sub in subs:
                sub._close()

    async def _attach(self, sub: Subscription) -> None:
        self._check_open()
        self._add(sub)

    async def _detach(self, sub: Subscription) -> None:
        self._remove(sub)


class LocalBus(_FanOut):
    """In-process fan-out: every subscriber of the channel gets the message, the publisher's own."""

    async def start(self) -> None:
        self._started = True

    async def aclose(self) -> None:
        self._closed = True
        self._end_subscriptions()

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        # Encoded like NOTIFY's payload: the same refusals, and subscribers get plain JSON values.
        payload = encode(channel, message)
        self._check_open()
        self._fan_out(channel, payload)


# What a lost or unusable connection raises in asyncpg (a server gone, a socket reset, a timeout).
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresBus(_FanOut):
    """LISTEN/NOTIFY on the application's database.

    One dedicated connection holds the LISTENs (a pooled one would be handed to other work). When
    it is lost, noticed by asyncpg or by a periodic check for a silent network loss, it is
    reconnected with backoff and every channel that has subscribers is LISTENed again. Publishing
    is `SELECT pg_notify(...)` on the SQLAlchemy engine's pool when one is given, otherwise on a
    small asyncpg pool of the bus's own; NOTIFY reaches every listener, this process's included."""

    def __init__(
        self,
        database_url: str,
        engine: AsyncEngine | None = None,
        *,
        queue_size: int = QUEUE_SIZE,
        check_interval_s: float = 10.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        super().__init__(queue_size)
        self.reconnects = 0  # times the listening connection was replaced
        self._dsn = asyncpg_dsn(database_url)
        self._engine = engine
        self._check_interval_s = check_interval_s
        self._max_backoff_s = max_backoff_s
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listening: set[str] = set()  # channels LISTENed on self._listener
        # asyncpg runs one operation at a time on a connection: LISTEN, UNLISTEN, the health check
        # and the reconnect's re-LISTENs take turns.
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Connects now, so a wrong URL or a database that is down stops the server's start.
        if self._engine is None:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=2)
        try:
            self._listener = await self._connect()
        except BaseException:
            if self._pool is not None:
                await self._pool.close()
            raise
        self._started = True
        self._supervisor = asyncio.create_task(self._supervise(), name="event-bus-listener")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        self._end_subscriptions()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.remove_termination_listener(self._on_lost)
            try:
                await asyncio.wait_for(listener.close(), 5)
            except _CONNECTION_ERRORS:
                listener.terminate()
        if self._pool is not None:
            await self._pool.close()

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        payload = encode(channel, message)
        self._check_open()
        if self._engine is not None:
            # begin(): NOTIFY is sent when its transaction commits.
            async with self._engine.begin() as connection:
                await connection.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": PG_PREFIX + channel, "payload": payload},
                )
        else:
            assert self._pool is not None
            await self._pool.execute("SELECT pg_notify($1, $2)", PG_PREFIX + channel, payload, timeout=10)

    @property
    def listener_pid(self) -> int | None:
        """The server process of the listening connection (pg_stat_activity's pid); None while down."""
        listener = self._listener
        return None if listener is None or listener.is_closed() else listener.get_server_pid()

    async def listening(self) -> set[str]:
        """The channels the listening connection LISTENs on, as PostgreSQL says (empty while down)."""
        async with self._lock:
            if self._listener is None:
                return set()
            try:
                rows = await self._listener.fetch("SELECT pg_listening_channels() AS channel")
            except _CONNECTION_ERRORS:
                return set()
        return {r["channel"].removeprefix(PG_PREFIX) for r in rows if r["channel"].startswith(PG_PREFIX)}

    async def _attach(self, sub: Subscription) -> None:
        self._check_open()
        async with self._lock:
            # Registered first: if the connection is down, the reconnect LISTENs for it.
            self._add(sub)
            try:
                if self._listener is not None:
                    # Awaited, so what is published after entering the subscription reaches it.
                    await self._listen(self._listener, sub.channel)
            except BaseException:  # cancelled: __aexit__ will not run to unregister it
                self._remove(sub)
                raise

    async def _detach(self, sub: Subscription) -> None:
        if not self._remove(sub) or self._closed:
            return
        async with self._lock:
            listener = self._listener
            # A new subscriber may have come while this one waited for the lock.
            if sub.channel in self._subscribers or sub.channel not in self._listening or listener is None:
                return
            self._listening.discard(sub.channel)  # first: a cancelled UNLISTEN then re-LISTENs next time
            try:
                await asyncio.wait_for(
                    listener.remove_listener(PG_PREFIX + sub.channel, self._on_notify), self._check_interval_s
                )
            except _CONNECTION_ERRORS:
                self._lost.set()  # the reconnect only LISTENs channels that have subscribers

    async def _connect(self) -> asyncpg.Connection:
        # Named, so an operator finds it in pg_stat_activity.
        connection = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": LISTENER_NAME}
        )
        connection.add_termination_listener(self._on_lost)
        return connection

    async def _listen(self, connection: asyncpg.Connection, channel: str) -> None:
        if channel in self._listening:
            return
        try:
            # With a timeout: on a silently lost network it would wait forever, holding the lock
            # the health check needs to notice.
            await asyncio.wait_for(
                connection.add_listener(PG_PREFIX + channel, self._on_notify), self._check_interval_s
            )
        except _CONNECTION_ERRORS:
            log.warning("event bus: LISTEN %s failed; reconnecting", channel, exc_info=True)
            self._lost.set()
            return
        self._listening.add(channel)

    def _on_lost(self, connection: asyncpg.Connection) -> None:
        if connection is self._listener:
            self._lost.set()

    def _on_notify(self, _connection: asyncpg.Connection, _pid: int, pg_channel: str, payload: str) -> None:
        channel = pg_channel.removeprefix(PG_PREFIX)
        try:
            if not isinstance(json.loads(payload), dict):
                raise ValueError("not a JSON object")
        except ValueError:
            # Someone else's NOTIFY on our channel: not ours to deliver.
            log.warning("event bus: ignored a notification on %s that is not a JSON object", channel)
            return
        self._fan_out(channel, payload)

    async def _supervise(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self._check_interval_s)
            except TimeoutError:
                if await self._healthy():
                    continue
            try:
                await self._reconnect()
            except Exception:  # the supervisor must outlive anything, or the bus goes deaf
                log.exception("event bus: reconnecting failed")
                await asyncio.sleep(self._max_backoff_s)

    async def _healthy(self) -> bool:
        # asyncpg notices a closed socket at once; a network that silently drops packets only
        # shows when a query gets no answer.
        async with self._lock:
            listener = self._listener
            if listener is None or listener.is_closed():
                return False
            try:
                await listener.fetchval("SELECT 1", timeout=self._check_interval_s)
            except _CONNECTION_ERRORS:
                return False
            return True

    async def _reconnect(self) -> None:
        async with self._lock:
            old, self._listener = self._listener, None
            self._listening.clear()
            self._lost.clear()
        if old is not None:
            old.remove_termination_listener(self._on_lost)
            old.terminate()
        log.warning("event bus: the listening connection was lost; reconnecting")
        delay = 0.1
        while True:
            try:
                connection = await self._connect()
                break
            except _CONNECTION_ERRORS as exc:
                log.warning("event bus: reconnecting failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
        try:
            await self._lock.acquire()
        except BaseException:  # cancelled by aclose() before the connection was handed over
            connection.terminate()
            raise
        try:
            self._listener = connection
            if connection.is_closed():  # lost before it was ours: _on_lost did not recognise it
                self._lost.set()
                return
            for channel in list(self._subscribers):
                await self._listen(connection, channel)
            self.reconnects += 1
        finally:
            self._lock.release()
        log.info("event bus: reconnected (server pid %s) to %s", self.listener_pid, self._listening)


def bus_for(
    database_url: str, engine: AsyncEngine | None = None, *, queue_size: int = QUEUE_SIZE
) -> EventBus:
    """PostgresBus on a PostgreSQL database (processes share it), LocalBus on anything else.

    `engine`, the application's engine on the same database, lends its pool for publishing."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresBus(database_url, engine, queue_size=queue_size)
    return LocalBus(queue_size)
