"""Deliberately broken gateways: the reference gateway with exactly one behaviour patched.

Each variant is a function that monkeypatches one seam of ``gateway`` (see
gateway/README.md). They live here, not in gateway/, so the reference gateway
never carries a switch to break itself. ``launch.py`` applies one and runs it.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import jwt

import socketio

from realtime_conformance import contract
from realtime_conformance.gateway import app, auth, config, consumer, metrics, origins, readmodel, rest, sockets

VARIANTS: dict[str, Callable[[], None]] = {}


def variant(fn: Callable[[], None]) -> Callable[[], None]:
    VARIANTS[fn.__name__] = fn
    return fn


_emit = sockets.emit_event


@variant
def none() -> None:
    """The reference gateway, unpatched: the control."""


@variant
def leak_across_tenants() -> None:
    async def emit(sio, tenant_id, event_type, data):
        await sio.emit(event_type, data)  # no room: every connected client of every tenant
    sockets.emit_event = emit


def _claims_unverified(token: str, settings) -> auth.Claims:
    payload = jwt.decode(token, options={"verify_signature": False})
    return auth.Claims(tenant_id=payload[settings.jwt_tenant_claim], exp=payload.get("exp"), raw=payload)


@variant
def accept_expired() -> None:
    verify = auth.verify_token

    def lenient(token, settings):
        try:
            return verify(token, settings)
        except auth.AuthError as exc:
            if exc.code != "token_expired":
                raise
            claims = _claims_unverified(token, settings)
            return auth.Claims(claims.tenant_id, None, raw=claims.raw)
    auth.verify_token = lenient


@variant
def accept_alg_none() -> None:
    verify = auth.verify_token

    def lenient(token, settings):
        if isinstance(token, str) and jwt.get_unverified_header(token).get("alg") == "none":
            return _claims_unverified(token, settings)
        return verify(token, settings)
    auth.verify_token = lenient


@variant
def lookalike_origin() -> None:
    def prefix_match(origin, allowed):
        return origin is None or any(origin.startswith(a) for a in allowed)
    origins.origin_allowed = prefix_match


@variant
def origin_unanchored_suffix() -> None:
    """Scheme and port compared, but the host only by ``endswith``: ``evillocalhost`` passes for ``localhost``."""
    def suffix_match(origin, allowed):
        if not origin:
            return True
        try:
            o = urlsplit(origin)
            port = o.port
        except ValueError:
            return False
        for entry in allowed:
            a = urlsplit(entry.replace("://*.", "://", 1))
            if o.scheme == a.scheme and port == a.port and (o.hostname or "\0").endswith(a.hostname or ""):
                return True
        return False
    origins.origin_allowed = suffix_match


@variant
def token_from_query() -> None:
    def from_query_too(auth_payload, environ):
        if isinstance(auth_payload, dict) and auth_payload.get("token"):
            return auth_payload["token"]
        return parse_qs(environ.get("QUERY_STRING", "")).get("token", [None])[0]
    sockets.extract_token = from_query_too


@variant
def drop_event_type() -> None:
    async def emit(sio, tenant_id, event_type, data):
        if event_type != "status_update":
            await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def alter_payload() -> None:
    async def emit(sio, tenant_id, event_type, data):
        await _emit(sio, tenant_id, event_type, {**data, "receivedAt": time.time()} if isinstance(data, dict) else data)
    sockets.emit_event = emit


@variant
def emit_twice() -> None:
    async def emit(sio, tenant_id, event_type, data):
        await _emit(sio, tenant_id, event_type, data)
        await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def reverse_order() -> None:
    """Swaps each tenant's events in pairs (a lone event goes out after 50 ms)."""
    held: dict[str, tuple[Any, ...]] = {}

    async def flush_later(tenant_id, item):
        await asyncio.sleep(0.05)
        if held.get(tenant_id) is item:
            del held[tenant_id]
            await _emit(*item)

    async def emit(sio, tenant_id, event_type, data):
        item = (sio, tenant_id, event_type, data)
        older = held.pop(tenant_id, None)
        if older is not None:  # the one waiting goes out after the newer one
            await _emit(*item)
            await _emit(*older)
        else:
            held[tenant_id] = item
            asyncio.get_running_loop().create_task(flush_later(tenant_id, item))
    sockets.emit_event = emit


def _delayed(seconds: float) -> None:
    """Every emit happens ``seconds`` late (order kept: equal delays fire in order)."""
    async def later(sio, tenant_id, event_type, data):
        await asyncio.sleep(seconds)
        await _emit(sio, tenant_id, event_type, data)

    async def emit(sio, tenant_id, event_type, data):
        asyncio.get_running_loop().create_task(later(sio, tenant_id, event_type, data))
    sockets.emit_event = emit


@variant
def delay_1500ms() -> None:
    _delayed(1.5)


@variant
def status_without_conversation() -> None:
    async def emit(sio, tenant_id, event_type, data):
        if event_type == "status_update" and isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "conversationId"}
        await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def stats_to_all_tenants() -> None:
    async def current(self, tenant, *, force):
        stats = self._readmodel.stats(tenant)
        payload = stats.as_payload(metrics.utc_now_iso())
        if force or metrics.should_emit_stats(self._last.get(tenant), stats):
            self._last[tenant] = stats
            await self._sio.emit("metrics_update", payload)  # to every tenant's tabs
        return payload
    metrics.MetricsPublisher.current = current


@variant
def stats_emit_every_read() -> None:
    metrics.should_emit_stats = lambda last, current: True


@variant
def periodic_metrics() -> None:
    """Pushes fresh stats to every room every 2 s, whether or not anything changed."""
    handle = consumer.EventConsumer.process_envelope

    async def tick(self):
        while True:
            await asyncio.sleep(2.0)
            for room in list(self.sio.manager.rooms.get("/", {})):
                if isinstance(room, str) and room.startswith("tenant:"):
                    await self.metrics.current(room.removeprefix("tenant:"), force=True)

    async def process(self, envelope, body, redelivered=False):
        if not getattr(self, "_ticking", False):
            self._ticking = True
            asyncio.get_running_loop().create_task(tick(self))
        await handle(self, envelope, body, redelivered)
    consumer.EventConsumer.process_envelope = process


@variant
def consumer_not_reregistered() -> None:
    first = consumer.EventConsumer._connect_and_consume

    async def connect_and_forget(self):
        if not getattr(self, "_consumed_once", False):
            self._consumed_once = True
            return await first(self)
        # Reconnects, but never registers the consumer again.
        import aio_pika
        self._connection = await aio_pika.connect(self.settings.rabbitmq_url, timeout=5)
        await self._open_channel()
        self.connected = True
    consumer.EventConsumer._connect_and_consume = connect_and_forget


@variant
def ack_before_emit() -> None:
    """Acks each message on receipt, then works through its in-process backlog: a kill loses it."""
    import aio_pika

    async def connect_ack_on_receipt(self):
        self._inbox = asyncio.Queue()
        self._connection = await aio_pika.connect(self.settings.rabbitmq_url, timeout=5)
        queue = await self._declare()
        inbox = self._inbox

        async def take(message):
            await message.ack()  # before the work is done
            await inbox.put(message)
        await queue.consume(take, no_ack=False)
        self.connected = True

    async def handle(self, message):
        try:
            envelope = consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError as exc:
            await self.dead_letter(message, exc.reason)
            return
        await asyncio.sleep(0.005)  # a read-model write's worth of work
        await self.process_envelope(envelope, message.body, redelivered=bool(message.redelivered))
    consumer.EventConsumer._connect_and_consume = connect_ack_on_receipt
    consumer.EventConsumer.handle_message = handle


@variant
def poison_requeued_forever() -> None:
    handle = consumer.EventConsumer.handle_message

    async def requeue(self, message):
        try:
            consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError:
            await message.nack(requeue=True)
            return
        await handle(self, message)
    consumer.EventConsumer.handle_message = requeue


@variant
def drops_malformed_silently() -> None:
    """Acks a malformed message and forgets it: no dead-letter queue, no log line. Judged with
    --lacks dead-letter-queue, FAULT-2 reads the gateway's log and finds nothing naming them."""
    handle = consumer.EventConsumer.handle_message

    async def drop(self, message):
        try:
            consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError:
            await message.ack()
            return
        await handle(self, message)
    consumer.EventConsumer.handle_message = drop


@variant
def poison_kills_consumer() -> None:
    handle = consumer.EventConsumer.handle_message

    async def die(self, message):
        try:
            consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError:
            self._stopping.set()  # the consumer gives up for good; HTTP and sockets stay up
            return
        await handle(self, message)
    consumer.EventConsumer.handle_message = die


@variant
def slow_restart() -> None:
    database = Path(os.environ.get("DATABASE_PATH", "./data/gateway.sqlite3"))
    if database.exists():  # a restart: come back later than any reconnect policy waits
        time.sleep(float(os.environ.get("SLOW_RESTART_S", "28")))


@variant
def expiry_not_enforced() -> None:
    sockets.expiry_delay = lambda claims, now=None: None


@variant
def readmodel_lost_on_restart() -> None:
    database = Path(os.environ.get("DATABASE_PATH", "./data/gateway.sqlite3"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)


def _furthest_is_last(current, new):
    return new


@variant
def status_last_write_wins() -> None:
    readmodel.furthest_status = _furthest_is_last


# -- one variant for each remaining requirement -------------------------------------------


def _lenient(code: str, claims_for: Callable[[str | None, Any], auth.Claims]) -> None:
    """verify_token, except that a refusal with ``code`` is turned into these claims."""
    verify = auth.verify_token

    def lenient(token, settings):
        try:
            return verify(token, settings)
        except auth.AuthError as exc:
            if exc.code != code:
                raise
            return claims_for(token if isinstance(token, str) else None, settings)
    auth.verify_token = lenient


def _server_option(**overrides: Any) -> None:
    init = socketio.AsyncServer.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **{**kwargs, **overrides})
    socketio.AsyncServer.__init__ = patched


def _after_create(extra: Callable[[socketio.AsyncServer], None]) -> None:
    create = sockets.create_server

    def patched(settings):
        sio, timers = create(settings)
        extra(sio)
        return sio, timers
    sockets.create_server = patched


@variant
def websocket_refused() -> None:
    _server_option(transports=["polling"])


@variant
def polling_refused() -> None:
    _server_option(transports=["websocket"])


@variant
def slow_handshake() -> None:
    verify = auth.verify_token

    def slow(token, settings):
        time.sleep(1.1)  # a blocking lookup in the handshake
        return verify(token, settings)
    auth.verify_token = slow


@variant
def room_from_subject() -> None:
    """Clients join a room named from the token's subject: no event reaches anyone. From outside this
    is a gateway that delivers nothing (DLV-1, DLV-6); which claim it read cannot be told."""
    verify = auth.verify_token

    def wrong_room(token, settings):
        claims = verify(token, settings)
        return auth.Claims(tenant_id=f"user:{claims.subject}", exp=claims.exp, subject=claims.subject, raw=claims.raw)
    auth.verify_token = wrong_room


@variant
def requires_unlisted_claim() -> None:
    """Refuses valid tokens that lack a `role` claim, which the contract does not ask issuers for."""
    verify = auth.verify_token

    def strict(token, settings):
        claims = verify(token, settings)
        if not (claims.raw or {}).get("role"):
            raise auth.AuthError("token_invalid", "token has no role claim")
        return claims
    auth.verify_token = strict


@variant
def missing_token_accepted() -> None:
    _lenient("token_missing", lambda token, settings: auth.Claims(tenant_id="public", exp=None))


@variant
def signature_not_checked() -> None:
    _lenient("token_invalid", lambda token, settings: _claims_unverified(token, settings))


@variant
def default_tenant() -> None:
    _lenient("tenant_missing", lambda token, settings: auth.Claims(tenant_id="default", exp=None))


@variant
def refused_subject_banned() -> None:
    """After refusing an expired token, refuses its subject for a minute, fresh token or not."""
    verify = auth.verify_token
    banned: dict[str, float] = {}

    def banning(token, settings):
        try:
            claims = verify(token, settings)
        except auth.AuthError as exc:
            if exc.code == "token_expired":
                banned[str(jwt.decode(token, options={"verify_signature": False}).get("sub"))] = time.time() + 60
            raise
        if banned.get(str(claims.subject), 0) > time.time():
            raise auth.AuthError("token_invalid", "this subject was refused recently")
        return claims
    auth.verify_token = banning


@variant
def nbf_ignored() -> None:
    _lenient("token_not_yet_valid", lambda token, settings: _claims_unverified(token, settings))


@variant
def refusal_without_code() -> None:
    class Plain(socketio.exceptions.ConnectionRefusedError):
        def __init__(self, code, message):
            super().__init__(message)  # data is {"message": ...}: nothing a portal can act on
    sockets.HandshakeRefused = Plain


@variant
def every_origin_refused() -> None:
    origins.origin_allowed = lambda origin, allowed: origin is None


@variant
def delay_150ms() -> None:
    _delayed(0.15)


@variant
def never_acks() -> None:
    async def handle(self, message):
        try:
            envelope = consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError as exc:
            await self.dead_letter(message, exc.reason)
            await message.ack()
            return
        await self.process_envelope(envelope, message.body, redelivered=bool(message.redelivered))
        # ...and forgets the ack: every event stays unacknowledged on the broker.
    consumer.EventConsumer.handle_message = handle


@variant
def transient_queue() -> None:
    async def declare(self):
        channel = await self._open_channel()
        queue = await channel.declare_queue(self.settings.queue, durable=False)
        await channel.declare_queue(self.settings.dlq, durable=True)
        return queue
    consumer.EventConsumer._declare = declare


def _connect_handler(sio):
    return sio.handlers["/"]["connect"]


@variant
def one_tab_per_token() -> None:
    """Keeps one connection per token: a new tab silently replaces the older ones."""
    def extra(sio):
        connect = _connect_handler(sio)
        latest: dict[str, str] = {}

        async def single(sid, environ, auth_payload=None):
            await connect(sid, environ, auth_payload)
            token = str((auth_payload or {}).get("token"))
            previous, latest[token] = latest.get(token), sid
            if previous is not None:
                await sio.leave_room(previous, next(iter(r for r in sio.rooms(previous) if r.startswith("tenant:")), ""))
        sio.on("connect", single)
    _after_create(extra)


@variant
def closing_tab_evicts_siblings() -> None:
    def extra(sio):
        disconnect = sio.handlers["/"]["disconnect"]

        async def evict(sid, reason=None):
            rooms = [r for r in sio.rooms(sid) if isinstance(r, str) and r.startswith("tenant:")]
            await disconnect(sid, reason)
            for room in rooms:
                for other, _eio in list(sio.manager.get_participants("/", room)):
                    await sio.leave_room(other, room)
        sio.on("disconnect", evict)
    _after_create(extra)


@variant
def honours_join() -> None:
    def extra(sio):
        async def join(sid, room):
            name = room if isinstance(room, str) else (room or {}).get("room") or (room or {}).get("tenantId")
            if isinstance(name, str):
                await sio.enter_room(sid, name if name.startswith("tenant:") else contract.room_for(name))
        for event in ("join", "subscribe"):
            sio.on(event, join)
    _after_create(extra)


@variant
def room_by_prefix() -> None:
    room_for = contract.room_for
    contract.room_for = lambda tenant: room_for(tenant.split(":")[0].strip("*#") or "x")


@variant
def rest_ignores_tenant() -> None:
    readmodel.ReadModel.has_conversation = lambda self, tenant, conv: self._db.execute(
        "SELECT 1 FROM conversations WHERE conversation_id = ?", (conv,)).fetchone() is not None
    messages = readmodel.ReadModel.messages

    def any_tenant(self, tenant, conv):
        owner = self._db.execute("SELECT tenant_id FROM conversations WHERE conversation_id = ?", (conv,)).fetchone()
        return messages(self, owner[0] if owner else tenant, conv)
    readmodel.ReadModel.messages = any_tenant


@variant
def preflight_without_authorization() -> None:
    """The REST preflight leaves Authorization out of Access-Control-Allow-Headers: every check over
    plain HTTP passes, and a browser at a listed origin cannot send its token ("Failed to fetch")."""
    rest.PREFLIGHT_ALLOW_HEADERS = "Content-Type"


@variant
def preflight_any_origin() -> None:
    """REST serves every Origin and echoes it in its CORS headers; Socket.IO keeps the exact policy."""
    rest.cors_allowed = lambda origin, allowed: True


@variant
def drops_failed_status() -> None:
    async def emit(sio, tenant_id, event_type, data):
        if not (event_type == "status_update" and isinstance(data, dict) and data.get("status") == "failed"):
            await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def drops_queue_metrics() -> None:
    process = consumer.EventConsumer.process_envelope

    async def skip_metrics(self, envelope, body, redelivered=False):
        if envelope.get("type") != "metrics_update":
            await process(self, envelope, body, redelivered)
    consumer.EventConsumer.process_envelope = skip_metrics


@variant
def no_metrics_on_new_conversation() -> None:
    process = consumer.EventConsumer.process_envelope

    class Quiet:
        async def current(self, tenant, *, force):
            return {}

    async def quiet(self, envelope, body, redelivered=False):
        real, self.metrics = self.metrics, Quiet()
        try:
            await process(self, envelope, body, redelivered)
        finally:
            self.metrics = real
    consumer.EventConsumer.process_envelope = quiet


@variant
def rest_skips_signature() -> None:
    def tenant_of(self, headers):
        token = headers.get("authorization", "").partition(" ")[2].strip()
        claims = jwt.decode(token, options={"verify_signature": False}) if token else {}
        return str(claims.get(self.settings.jwt_tenant_claim, "anonymous"))
    rest.RestApp._tenant = tenant_of


@variant
def purges_backlog_on_start() -> None:
    declare = consumer.EventConsumer._declare

    async def purge(self):
        queue = await declare(self)
        await queue.purge()  # "stale" events from before the restart are thrown away
        return queue
    consumer.EventConsumer._declare = purge


@variant
def weak_secret_allowed() -> None:
    config.MIN_SECRET_BYTES = 1


# -- one defect each, judged by the whole suite (issue: one defect, one verdict) -----------
# Each is a defect seen in gateways not written alongside the harness. The test runs every
# requirement against them and counts what else turned red (the collateral).


def _never_emits(event_type: str) -> Callable[[], None]:
    def patch() -> None:
        async def emit(sio, tenant_id, kind, data):
            if kind != event_type:  # the gateway's own metrics_update goes through here too
                await _emit(sio, tenant_id, kind, data)
        sockets.emit_event = emit
    patch.__doc__ = f"Never emits {event_type}, from the queue or of its own."
    return patch


for _type in contract.event_types():
    VARIANTS[f"never_emits_{_type}"] = _never_emits(_type)


def _stamp_field(event_type: str) -> str:
    return {"conversation_update": "lastMessageAt"}.get(event_type, "timestamp")


@variant
def payload_loses_field() -> None:
    """Every payload loses one field: the first of its keys in sorted order, its time field aside."""
    async def emit(sio, tenant_id, event_type, data):
        if isinstance(data, dict):
            keys = sorted(k for k in data if k != _stamp_field(event_type))
            data = {k: v for k, v in data.items() if not keys or k != keys[0]}
        await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def status_rebuilt_from_envelope() -> None:
    """status_update is rebuilt from the envelope: its own time and error details replaced by the envelope's."""
    process = consumer.EventConsumer.process_envelope

    async def rebuilt(self, envelope, body, redelivered=False):
        data = envelope.get("data")
        if envelope.get("type") == "status_update" and isinstance(data, dict):
            envelope = {**envelope, "data": {"messageId": data.get("messageId"), "conversationId": data.get("conversationId"),
                                             "status": data.get("status"), "timestamp": envelope.get("timestamp")}}
        await process(self, envelope, body, redelivered)
    consumer.EventConsumer.process_envelope = rebuilt


@variant
def queue_name_hardcoded() -> None:
    """Consumes the default queue whatever AGENT_PORTAL_EVENTS_QUEUE says."""
    import dataclasses

    load = config.load_settings

    def fixed(env=None):
        return dataclasses.replace(load(env), queue=contract.default_queue())
    config.load_settings = fixed


@variant
def refusal_code_in_data_only() -> None:
    """Not a defect: refusals shaped as the JS socket.io server sends them, {message, data: {code}}."""
    class JsShaped(socketio.exceptions.ConnectionRefusedError):
        def __init__(self, code, message):
            super().__init__(message)
            self.error_args = {"message": message, "data": {"code": code}}
    sockets.HandshakeRefused = JsShaped


LEAK_EVERY = int(os.environ.get("RTC_LEAK_EVERY", "25"))  # 4 % of the events from the queue


_LEAKING = contextvars.ContextVar("leaking", default=False)


@variant
def intermittent_leak() -> None:
    """Every 25th event from the queue goes to every connected client: deterministic, so it cannot flake."""
    process = consumer.EventConsumer.process_envelope
    emit_to_room = sockets.emit_event
    count = {"n": 0}

    async def emit(sio, tenant_id, event_type, data):
        if _LEAKING.get():  # set only inside the handling of a leaked queue event (a task of its own)
            await sio.emit(event_type, data)
        else:
            await emit_to_room(sio, tenant_id, event_type, data)

    async def leaky(self, envelope, body, redelivered=False):
        count["n"] += 1
        token = _LEAKING.set(count["n"] % LEAK_EVERY == 0)
        try:
            await process(self, envelope, body, redelivered)
        finally:
            _LEAKING.reset(token)
    sockets.emit_event = emit
    consumer.EventConsumer.process_envelope = leaky


@variant
def queue_with_arguments() -> None:
    """Not a defect: the gateway declares its queue with arguments (single active consumer, a
    dead-letter route), as many do; nothing of the harness may trip over them."""
    async def declare(self):
        channel = await self._open_channel()
        queue = await channel.declare_queue(self.settings.queue, durable=True, arguments={
            "x-single-active-consumer": True, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.settings.dlq})
        await channel.declare_queue(self.settings.dlq, durable=True)
        return queue
    consumer.EventConsumer._declare = declare


# -- stopping (FAULT-7: a deploy's SIGTERM) ----------------------------------------------------------


@variant
def sigterm_hangs_with_open_sockets() -> None:
    """On SIGTERM it stops consuming, then waits for every client to leave before it closes anything,
    as a server closed without closing its connections does: with tabs open it never exits by itself."""
    disconnect = app.Gateway.disconnect_clients

    async def wait_for_clients_to_leave(self):
        while self.sio.eio.sockets:  # open tabs ping on, so this ends only when they are gone
            await asyncio.sleep(0.1)
        await disconnect(self)
    app.Gateway.disconnect_clients = wait_for_clients_to_leave


@variant
def acks_unemitted_on_shutdown() -> None:
    """On SIGTERM it acks every delivery it holds ("done with them") before closing, though it has not
    emitted them: the broker forgets events no tab ever saw. It works through deliveries a little slowly
    (5 ms each, as a busy gateway does), so the check's burst leaves some in hand at the SIGTERM: a gateway
    that keeps up holds none, and its defect cannot show (seen in CI: FAULT-7 PASS)."""
    stop, handle = consumer.EventConsumer.stop, consumer.EventConsumer.handle_message

    async def handle_slowly(self, message):
        await asyncio.sleep(0.005)
        await handle(self, message)

    async def stop_and_ack_the_rest(self):
        held = []
        while not self._inbox.empty():
            held.append(self._inbox.get_nowait())
        if held:  # acked while the channel is still open: after stop() the ack raced the channel's close
            try:
                await held[-1].ack(multiple=True)  # up to and including the last one held
            except Exception:
                pass  # the channel is gone already: nothing was acked after all
        await stop(self)
    consumer.EventConsumer.stop = stop_and_ack_the_rest
    consumer.EventConsumer.handle_message = handle_slowly


# -- several instances (REDIS_URL set; the harness passes GATEWAY_REPLICA={replica}) -------------
# Each is inert when the gateway runs alone, and breaks one thing the cluster area judges.

def _replica() -> str:
    return os.environ.get("GATEWAY_REPLICA", "1")


def _clustered() -> bool:
    return bool(os.environ.get("REDIS_URL", "").strip())


@variant
def cluster_no_adapter() -> None:
    """The instances run without the Socket.IO adapter: each emits to its own clients only."""
    from realtime_conformance.gateway import cluster

    cluster.client_manager = lambda redis_url: socketio.AsyncManager()


@variant
def cluster_copy_per_instance() -> None:
    """The adapter, and every instance emitting its own copy of each event, as if each consumed a copy of
    the queue: the instance that consumed an event hands it (over Redis) to the others, which emit it too."""
    import json
    import uuid

    me = uuid.uuid4().hex.encode()
    run, process = consumer.EventConsumer.run, consumer.EventConsumer.process_envelope

    def channel(self) -> str:
        return f"rtc-broken-copies:{self.settings.queue}"

    async def copies_in(self) -> None:
        from redis import asyncio as aioredis

        pubsub = aioredis.Redis.from_url(self.settings.redis_url).pubsub()
        await pubsub.subscribe(channel(self))
        async for message in pubsub.listen():
            if message.get("type") != "message":
                continue
            origin, _, body = message["data"].partition(b" ")
            if origin != me:
                envelope = json.loads(body)
                await sockets.emit_event(self.sio, envelope["tenantId"], envelope["type"], envelope["data"])

    async def running(self) -> None:
        task = asyncio.create_task(copies_in(self)) if self.settings.clustered else None
        try:
            await run(self)
        finally:
            if task is not None:
                task.cancel()

    async def processed(self, envelope, body, redelivered=False):
        await process(self, envelope, body, redelivered)
        if self.settings.clustered:
            from redis import asyncio as aioredis

            if not hasattr(self, "_copies_out"):
                self._copies_out = aioredis.Redis.from_url(self.settings.redis_url)
            await self._copies_out.publish(channel(self), me + b" " + body)
    consumer.EventConsumer.run = running
    consumer.EventConsumer.process_envelope = processed


@variant
def cluster_rooms_keyed_differently() -> None:
    """Replica 2 names tenant rooms from the percent-encoded tenant id (another release, say): ordinary
    ids come out the same, room-like and unicode ones do not, so its clients of those tenants miss
    what the other instances emit, and the others' clients miss what it emits."""
    from urllib.parse import quote

    if _clustered() and _replica() == "2":
        room_for = contract.room_for
        contract.room_for = lambda tenant: room_for(quote(str(tenant), safe=""))


@variant
def cluster_adapter_drops_room() -> None:
    """Emits that arrive from another instance over the adapter go to every client of the receiving
    instance: the room is lost on the way (a hand-made adapter, say)."""
    handle = socketio.AsyncRedisManager._handle_emit

    async def handle_emit(self, message):
        if message.get("host_id") != self.host_id:
            message = {**message, "room": None}
        await handle(self, message)
    socketio.AsyncRedisManager._handle_emit = handle_emit


@variant
def cluster_local_read_model() -> None:
    """Each instance keeps its read model in a file of its own: its REST shows what it consumed only."""
    path = os.environ.get("DATABASE_PATH", "").strip()
    if _clustered() and path:
        os.environ["DATABASE_PATH"] = f"{path}.replica{_replica()}"


@variant
def cluster_competing_consumers() -> None:
    """The instances share the queue as competing consumers (no single active consumer), replica 2 a
    little slower: a tenant's events are handled side by side and overtake each other."""
    consumer.SINGLE_ACTIVE_CONSUMER = {}
    if _clustered() and _replica() == "2":
        async def emit(sio, tenant_id, event_type, data):
            await asyncio.sleep(0.02)
            await _emit(sio, tenant_id, event_type, data)
        sockets.emit_event = emit


@variant
def cluster_static_leader() -> None:
    """Only replica 1 ever consumes; the others wait for a leader that never hands over, so when it dies
    nobody consumes until it is back."""
    run = consumer.EventConsumer.run

    async def running(self) -> None:
        if self.settings.clustered and _replica() != "1":
            await self._stopping.wait()
            return
        await run(self)
    consumer.EventConsumer.run = running


@variant
def stalls_every_10th_emit() -> None:
    """Slow, not lossy: the single consumer stalls 1.2 s before every 10th emit, so a backlog queues
    behind each stall (a GC pause, a slow database, a CPU-starved pod). It acks after emitting."""
    count = {"emits": 0}

    async def emit(sio, tenant_id, event_type, data):
        count["emits"] += 1
        if count["emits"] % 10 == 0:
            await asyncio.sleep(1.2)  # awaited inline: the consumer takes nothing else meanwhile
        await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def no_consume_after_failed_first_connect() -> None:
    """Gives up on its broker for good when the first connection fails (a gateway started before its
    broker), but reconnects and consumes again after a broker restart while it runs: FAULT-6 only."""
    connect = consumer.EventConsumer._connect_and_consume

    async def once_or_never(self):
        if getattr(self, "_gave_up", False):
            await self._stopping.wait()  # HTTP and sockets stay up; the queue is never consumed
            raise ConnectionError("stopping")
        try:
            await connect(self)
        except Exception:
            if not getattr(self, "_ever_connected", False):
                self._gave_up = True
            raise
        self._ever_connected = True
    consumer.EventConsumer._connect_and_consume = once_or_never

# -- ROB (issue 17): one hostile client takes the process down, or learns its insides --------------

CRASH_STATUS = 70  # what a crashed variant exits with, so a report's exit status is recognisable


@variant
def dies_on_reserved_event() -> None:
    """The process exits on a client event named ``error``, as a socket.io < 4.6.2 server with no
    error listener did (CVE-2024-38355): FAIL on ROB-1 only."""
    def die(sid: str, *args: Any) -> None:
        os._exit(CRASH_STATUS)
    _after_create(lambda sio: sio.on("error", die))


@variant
def dies_on_bad_attachment() -> None:
    """The process exits when a binary attachment placeholder names no attachment (an out-of-range
    or non-numeric ``num``), the socket.io-parser advisories' class: FAIL on ROB-1 only."""
    packet_class = socketio.packet.Packet
    original = packet_class._reconstruct_binary_internal.__func__

    def strict(cls, data, attachments):
        try:
            return original(cls, data, attachments)
        except (IndexError, TypeError, KeyError):
            os._exit(CRASH_STATUS)
    packet_class._reconstruct_binary_internal = classmethod(strict)


@variant
def http_dies_on_reset_upgrade() -> None:
    """The HTTP layer takes the process down when a client resets its connection in the middle of
    a WebSocket upgrade request (the engine.io advisories' class): FAIL on ROB-2 only. The server
    runs on uvicorn's h11 protocol here, whose connection_lost sees the half-read request."""
    import uvicorn
    from uvicorn.protocols.http import h11_impl

    init = uvicorn.Config.__init__

    def h11_only(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "http": "h11"})
    uvicorn.Config.__init__ = h11_only
    received, lost = h11_impl.H11Protocol.data_received, h11_impl.H11Protocol.connection_lost

    def data_received(self, data: bytes) -> None:
        self._head = (getattr(self, "_head", b"") + data)[:65536]
        received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and b"upgrade: websocket" in getattr(self, "_head", b"").lower():
            os._exit(CRASH_STATUS)
        lost(self, exc)
    h11_impl.H11Protocol.data_received = data_received
    h11_impl.H11Protocol.connection_lost = connection_lost


@variant
def leaks_traceback_in_refusal() -> None:
    """Handshake refusals carry the stack of the check that refused (a debug setting left on):
    FAIL on ROB-3 only."""
    refused = sockets.HandshakeRefused

    class Verbose(refused):  # type: ignore[misc, valid-type]
        def __init__(self, code: str, message: str) -> None:
            super().__init__(code, message + "\nTraceback (most recent call last):\n"
                             + "".join(traceback.format_stack(limit=6)))
    sockets.HandshakeRefused = Verbose


# -- ROB (issue 18): one hostile client starves the others, or grows the process -------------------

_KEPT: list[Any] = []  # what the ROB-4 and ROB-5 variants never let go of


@variant
def buffers_oversize_message() -> None:
    """Reads an over-size WebSocket message whole (up to uvicorn's 16 MiB default, not the 64 KiB it
    advertises as maxPayload) and keeps it, as a log of rejected frames nobody reads, before closing
    the connection: the connection closes as required, but memory grows with every attempt. FAIL
    on ROB-4 only."""
    import uvicorn
    from engineio.async_drivers import asgi as engineio_asgi

    init = uvicorn.Config.__init__

    def whole_messages(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "ws_max_size": 16 * 1024 * 1024})
    uvicorn.Config.__init__ = whole_messages
    wait = engineio_asgi.WebSocket.wait

    async def keeping(self):
        data = await wait(self)
        if data is not None and len(data) > 64 * 1024:
            _KEPT.append(data)
        return data
    engineio_asgi.WebSocket.wait = keeping


@variant
def keeps_state_after_close() -> None:
    """Every Engine.IO session gets a 64 KiB replay buffer in a registry by sid that nothing removes
    when the connection closes: each connection, refused or not, leaves its state behind. FAIL on
    ROB-5 only."""
    from engineio import async_socket

    init = async_socket.AsyncSocket.__init__

    def registered(self, server, sid):
        init(self, server, sid)
        _KEPT.append({"sid": sid, "socket": self, "replay": bytearray(b"\x01") * (64 * 1024)})
    async_socket.AsyncSocket.__init__ = registered


@variant
def blocks_on_client_events() -> None:
    """Every event a client emits runs about 5 ms of synchronous work (a blocking lookup) on the
    event loop: one client emitting as fast as it can starves everyone else. FAIL on ROB-7 only."""
    def busy(event: str, sid: str, *args: Any) -> None:
        time.sleep(0.005)
    _after_create(lambda sio: sio.on("*", busy))


# -- ROB (issue 18): slow and silent clients, log flooding -------------------------------------------

@variant
def logs_traceback_per_frame() -> None:
    """Every malformed frame's library error is written with its full traceback (the reference
    before its log throttle): FAIL on ROB-8 only."""
    from realtime_conformance.gateway import throttle

    throttle.ClientErrorThrottle.filter = lambda self, record: True  # type: ignore[method-assign]


@variant
def never_closes_silent_sessions() -> None:
    """An Engine.IO session that never sends its Socket.IO CONNECT is kept for as long as it answers
    pings (python-socketio's own behaviour, no connectTimeout): FAIL on ROB-6 only."""
    from realtime_conformance.gateway import slowclients

    slowclients.close_silent_sessions = lambda sio, timeout_s: None


# -- refusals (AUTH-11: the refusal must reach the client) ------------------------------------------


@variant
def ends_refused_session_at_once() -> None:
    """It ends a refused client's Engine.IO session as soon as CONNECT_ERROR is queued, not once it has
    been read: a client upgrading to WebSocket (socket.io-client does at once) is holding the queue,
    so the refusal is lost and the client sees transport errors, and retries blindly."""
    async def close_now(sio, eio_sid):
        deadline = asyncio.get_running_loop().time() + 1.0
        while sio.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.002)
        if eio_sid in sio.eio.sockets:
            await sio.eio.disconnect(eio_sid)

    def close_soon(sio, sid):
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        if eio_sid is not None:
            asyncio.ensure_future(close_now(sio, eio_sid))
    sockets._close_engine_soon = close_soon
