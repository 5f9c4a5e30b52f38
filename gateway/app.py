"""Wiring and lifecycle: read model, Socket.IO, REST, consumer, uvicorn.

The consumer runs as a background task started next to the HTTP server, so a
broker that is down at start-up does not keep /health or the handshake from
answering. Shutdown order on SIGTERM: stop consuming (the message in hand is
finished and acked), stop accepting connections, send every Socket.IO client a
CLOSE behind what was already emitted to it and wait (at most DRAIN_S) for it to
hang up, stop uvicorn, close the database; the process then exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import sys
from typing import Any, Callable, Coroutine

import socketio
import uvicorn

from . import cluster, config, logs
from .config import ConfigError, Settings
from .consumer import EventConsumer
from .logs import log
from .metrics import MetricsPublisher
from .readmodel import ReadModel
from .rest import RestApp
from . import slowclients, sockets


class Gateway:
    """All the parts of one gateway process, built from one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            self.readmodel = ReadModel(settings.database_path)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                "DATABASE_PATH",
                f"DATABASE_PATH {settings.database_path!r} cannot be opened as an SQLite database ({exc}): "
                "point it at a writable file path, e.g. DATABASE_PATH=./data/gateway.sqlite3",
            ) from None
        self.sio, self.timers = sockets.create_server(settings)
        self.shared_stats = cluster.RedisLastStats(settings.redis_url) if settings.clustered else None
        self.metrics = MetricsPublisher(self.sio, self.readmodel, self.shared_stats)
        self.consumer = EventConsumer(settings, self.sio, self.readmodel, self.metrics)
        self.rest = RestApp(settings, self.readmodel, self.metrics, self.health)
        self.asgi = socketio.ASGIApp(self.sio, other_asgi_app=self.rest, socketio_path="socket.io")
        self._consumer_task: asyncio.Task[None] | None = None
        self.fatal: str | None = None  # why the gateway must stop (a queue declared the wrong way)
        self.on_fatal: Any = None  # set by serve(): asks the HTTP server to exit

    def health(self) -> dict[str, Any]:
        connected = self.consumer.connected
        return {"status": "ok" if connected else "degraded",
                "broker": "connected" if connected else "disconnected",
                "queue": self.settings.queue}

    def start_consumer(self) -> None:
        self._consumer_task = asyncio.create_task(self.consumer.run(), name="amqp-consumer")
        self._consumer_task.add_done_callback(self._consumer_ended)

    def _consumer_ended(self, task: "asyncio.Task[None]") -> None:
        if task.cancelled() or not isinstance(task.exception(), cluster.QueueMismatch):
            return
        self.fatal = str(task.exception())
        log("cannot consume in cluster mode", level=logging.ERROR, error=self.fatal)
        if self.on_fatal is not None:
            self.on_fatal()

    async def join_adapter(self) -> None:
        """Cluster mode: subscribe to the other instances' emits before serving clients."""
        manager = self.sio.manager
        if not isinstance(manager, cluster.ClusterRedisManager):
            return
        if await manager.subscribed(timeout=10):
            log("joined the Socket.IO Redis adapter", channel=manager.channel)
        else:
            log("Redis adapter not subscribed yet; clients here miss other instances' emits until it is",
                level=logging.ERROR)

    async def stop_consumer(self) -> None:
        await self.consumer.stop()
        task, self._consumer_task = self._consumer_task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(task, timeout=10)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
        except cluster.QueueMismatch:
            pass  # reported by _consumer_ended
        except Exception:
            log("consumer ended with an error", level=logging.ERROR, exc_info=True)

    async def disconnect_clients(self) -> None:
        """Send every client a CLOSE (so it reconnects elsewhere or later) without waiting on slow ones."""
        self.timers.cancel_all()
        eio_sockets = list(self.sio.eio.sockets.values())
        if eio_sockets:
            # The CLOSE goes behind whatever is still queued for the client; _Server._drained waits
            # for the client to read up to it and hang up.
            await asyncio.wait(
                [asyncio.create_task(s.close(wait=False)) for s in eio_sockets], timeout=2)
        self.sio.eio.sockets.clear()
        await self.sio.shutdown()

    async def close(self) -> None:
        if self.shared_stats is not None:
            try:
                await asyncio.wait_for(self.shared_stats.close(), timeout=2)
            except Exception:
                pass
        self.readmodel.close()


DRAIN_S = 3.0  # how long a SIGTERM waits for clients to read what was emitted to them and hang up


class _Server(uvicorn.Server):
    """uvicorn.Server that logs its port and drains the gateway before closing connections."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def startup(self, sockets: list[Any] | None = None) -> None:
        # uvicorn has no deadline for a request that never completes (ROB-6): its protocol gets one.
        self.config.http_protocol_class = slowclients.bounded_http(
            self.config.http_protocol_class, self.gateway.settings.request_timeout)
        await super().startup(sockets=sockets)
        if self.started:
            log(f"agent-portal gateway listening on port {self.config.port}",
                host=self.config.host, port=self.config.port, queue=self.gateway.settings.queue)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        log("shutting down")
        await self.gateway.stop_consumer()
        for server in self.servers:  # no new connections while the open ones drain
            server.close()
        await self.gateway.disconnect_clients()
        await self._drained(DRAIN_S)
        await super().shutdown(sockets=sockets)

    async def _drained(self, timeout: float) -> None:
        """Wait (bounded) for every client to hang up after its CLOSE.

        An event is acked once its emit is queued on each socket, not once it is on the wire;
        uvicorn's own shutdown fails open websockets at once, dropping what their writers have
        not sent yet. A client hangs up only after it has read everything queued before its
        CLOSE, so waiting for that loses nothing (FAULT-7); a stalled one costs ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.server_state.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)


async def serve(settings: Settings) -> None:
    """Run one gateway until SIGTERM/SIGINT."""
    gateway = Gateway(settings)
    config = uvicorn.Config(
        gateway.asgi,
        host=settings.host,
        port=settings.port,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        proxy_headers=False,
        # uvicorn's websockets protocol when the package is there (the gateway extra brings it):
        # under fan-out the bench measured it far ahead of wsproto (docs/bench.md).
        ws="auto",
        # A WebSocket message over Engine.IO's maxPayload is refused at its frame header (close
        # 1009), not read whole first: the limit the open packet advertises is the transport's (ROB-4).
        ws_max_size=sockets.MAX_PAYLOAD,
    )
    server = _Server(config, gateway)
    gateway.on_fatal = lambda: setattr(server, "should_exit", True)
    await gateway.join_adapter()
    gateway.start_consumer()
    try:
        await server.serve()
    finally:
        await gateway.stop_consumer()
        await gateway.close()
        log("stopped")
    if gateway.fatal is not None:
        raise ConfigError("AGENT_PORTAL_EVENTS_QUEUE", gateway.fatal)


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner where it is installed (the ``gateway`` extra brings it), else asyncio's.

    Under load the gateway spends most of its time in the event loop's own machinery (one
    websocket write per client per event, timers, task switches); the bench measured uvloop's
    loop doing that for markedly less CPU (docs/bench.md). Nothing in the gateway depends on it.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def run(settings: Settings | None = None) -> int:
    """Load settings (unless given), serve, and return the process exit code.

    2 for a configuration error (one line on stderr naming the variable), 0
    after a graceful SIGTERM/SIGINT.
    """
    try:
        if settings is None:
            settings = config.load_settings()  # looked up at call time: a patchable seam
    except ConfigError as exc:
        print(f"agent-portal-gateway: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    logs.configure(settings.log_level)
    # uvicorn re-raises the signal it caught once it has shut down; a no-op
    # handler underneath makes that re-raise harmless, so SIGTERM exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        _event_loop_runner()(serve(settings))
    except ConfigError as exc:
        print(f"agent-portal-gateway: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
