"""The requirement catalogue: stable IDs, levels and wording, held once.

CONFORMANCE.md is generated from this module (``python -m realtime_conformance.harness.catalogue``)
and a test checks the two agree, so the report, the markers and the document
can never disagree about what an ID means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["MUST", "SHOULD"]


@dataclass(frozen=True)
class Requirement:
    id: str
    level: Level
    title: str
    checklist: str | None = None
    retired: str | None = None  # why it is no longer judged, and what replaced it

    @property
    def active(self) -> bool:
        return self.retired is None

    @property
    def area(self) -> str:
        return self.id.split("-", 1)[0]


AREAS: dict[str, str] = {
    "CONN": "Transport and handshake",
    "AUTH": "Handshake authentication",
    "ORIG": "Origins (CORS)",
    "DLV": "Delivery",
    "TAB": "Several tabs of one user",
    "ISO": "Tenant isolation",
    "STAT": "Message status flow",
    "MET": "Dashboard metrics",
    "REST": "The manual refresh path",
    "RECON": "Reconnection",
    "FAULT": "Broker and input faults",
    "CLU": "Several instances (run with --gateway-replicas 2 or more; SKIPPED with one)",
    "ROB": "Robustness against broken and hostile clients",
}

_R = Requirement
REQUIREMENTS: tuple[Requirement, ...] = (
    _R("CONN-1", "MUST", "Socket.IO v4 (Engine.IO 4) connections over the websocket transport are accepted at the gateway URL (path /socket.io/).", "Frontend connects to port 3015"),
    _R("CONN-2", "SHOULD", "The polling transport works and upgrades to websocket."),
    _R("CONN-3", "MUST", "A client with a valid token is connected (CONNECT acknowledged) within 1 s; p50/p99 reported over at least 20 connects.", 'Connection indicator shows "Live"'),
    _R("AUTH-1", "MUST", "A JWT in the handshake auth.token, signed with the shared secret and unexpired, is accepted and puts the client in its tenant's room (shown by delivery).", "JWT included in handshake"),
    _R("AUTH-2", "MUST", "No token: refused with a connect_error; no event of any tenant reaches that client."),
    _R("AUTH-3", "MUST", "An expired token is refused."),
    _R("AUTH-4", "MUST", "A token signed with another secret, or with a tampered payload, is refused."),
    _R("AUTH-5", "MUST", "An unsigned (alg: none) token, or one in another algorithm than the configured one, is refused (RFC 8725 sections 2.1, 3.1)."),
    _R("AUTH-6", "MUST", "A token without a tenant claim, or with an empty one, is refused."),
    _R("AUTH-7", "MUST", "A client refused with an expired token that reconnects with a fresh one is accepted and receives events.", "Token refresh: socket reconnects with new token"),
    _R("AUTH-8", "SHOULD", "A connection whose token expires while connected is ended, or receives nothing more, no later than exp + 5 s."),
    _R("AUTH-9", "SHOULD", "A token passed in the URL query string is not accepted (URLs end up in logs)."),
    _R("AUTH-10", "SHOULD", "A token that is not yet valid (nbf in the future) is refused."),
    _R("AUTH-11", "SHOULD", 'A refusal carries a machine-readable reason (data.code, e.g. "token_expired"), so a portal can refresh its token instead of retrying blindly.'),
    _R("AUTH-12", "MUST", "A connection whose token has expired is not resumed by connection state recovery: a reconnect that presents the expired token with its session id and offset is refused, and nothing published meanwhile is sent to it, not even before the refusal."),
    _R("ORIG-1", "MUST", "A handshake from an Origin listed in ALLOWED_ORIGINS is accepted, on polling and on websocket."),
    _R("ORIG-2", "MUST", "A handshake from an Origin not listed is refused, on polling and on the websocket upgrade, including look-alikes of a listed origin (other scheme, other port, added suffix or prefix, a listed name inside a longer host)."),
    _R("ORIG-3", "MUST", "The REST API answers a browser's CORS requests for the listed origins only: for each listed Origin, the preflight of each REST call with Authorization (OPTIONS with Access-Control-Request-Method and Access-Control-Request-Headers: authorization) is answered 2xx with Access-Control-Allow-Origin naming that origin (or *) and Access-Control-Allow-Headers listing authorization (a * does not cover it), and the actual answer carries Access-Control-Allow-Origin; for an Origin not listed (the ORIG-2 look-alikes), neither the preflight nor the answer allows it. N/A with --lacks rest."),
    _R("DLV-1", "MUST", "Every valid event published on the queue reaches every connected client of its tenant as a Socket.IO event named after type, with a payload JSON-equal to data.", "New WhatsApp message appears immediately"),
    _R("DLV-2", "MUST", "Publish-to-receive latency is within the budget (default 1 s) for every delivery; p50, p95, p99 and max are reported per event type.", "<1 second fresh data"),
    _R("DLV-3", "SHOULD", "p99 latency is at most 100 ms in the conformance load profile."),
    _R("DLV-4", "MUST", "No client receives the same event twice.", "Infinite refetch loop"),
    _R("DLV-5", "MUST", "The events of one tenant reach each client in the order they were published."),
    _R("DLV-6", "MUST", "All four event types are delivered: new_message, conversation_update, status_update, metrics_update."),
    _R("DLV-7", "MUST", "The queue drains: once events are delivered, the queue holds 0 ready and 0 unacknowledged messages.", "RabbitMQ queue check"),
    _R("DLV-8", "MUST", "The gateway consumes a durable queue whose name is configurable (default waba.agent-portal.events)."),
    _R("TAB-1", "MUST", "Several connections with the same token each receive every event of their tenant exactly once.", "Multi-tab: both tabs receive same events"),
    _R("TAB-2", "MUST", "Closing one tab does not interrupt delivery to the user's other tabs."),
    _R("ISO-1", "MUST", "No client ever receives an event of another tenant, across generated interleavings of many tenants and tabs; every run has positive controls, so a silent gateway cannot pass.", "Cross-tenant: tenants only see their own events"),
    _R("ISO-2", "MUST", "A client cannot widen what it receives: emitting join or subscribe requests, or naming another tenant in the handshake auth or query, changes nothing."),
    _R("ISO-3", "MUST", "Tenant ids that look like room names or patterns (a:b, *, tenant:x, unicode, very long) stay isolated."),
    _R("ISO-4", "MUST", "REST endpoints serve only the token's tenant."),
    _R("STAT-1", "MUST", "status_update events (sent, delivered, read, failed) for a message reach the tenant's clients in publish order, carrying messageId, conversationId, status and timestamp.", "Status updates appear in real time"),
    _R("STAT-2", "MUST", "The messages endpoint shows the furthest status reached, whatever order updates were published in: sent to read without delivered is valid, a late delivered after read changes nothing, failed is final."),
    _R("STAT-3", "MUST", "Every status_update names the conversationId of its message (the portal invalidates ['conversation-messages', conversationId])."),
    _R("MET-1", "MUST", "metrics_update events from the queue reach the tenant's clients."),
    _R("MET-2", "MUST", "GET /api/dashboard/stats and POST /api/dashboard/refresh answer the tenant's stats and emit metrics_update, with the same numbers, to that tenant's room only.",
       retired="a GET that always emits is MET-3's refetch loop, and an emit was not tied to the call that caused it; replaced by MET-5"),
    _R("MET-3", "MUST", "No refetch loop: portal tabs that refetch stats on every metrics_update reach quiescence, with no further metrics_update and no further stats request, within 5 s of the last real change, with 3 tabs open.", "Infinite refetch loop"),
    _R("MET-4", "SHOULD", "A new conversation (new_message with isNewConversation true) is followed by a metrics_update to its tenant within 1 s.", "Dashboard metrics update when conversation created"),
    _R("MET-5", "MUST", "GET /api/dashboard/stats and POST /api/dashboard/refresh answer the tenant's stats. A refresh, and a GET whose numbers changed since the tenant's last metrics_update, are followed by a metrics_update with the numbers of that answer, to that tenant's room only."),
    _R("REST-1", "MUST", "While a client's socket is down, the REST endpoints answer 200 with data that includes the events published meanwhile.", "Disconnect: warning shown, manual refresh works"),
    _R("REST-2", "MUST", "REST endpoints refuse missing, expired, forged and unsigned tokens with 401."),
    _R("REST-3", "MUST", "The read model survives a gateway restart: data published before the restart is served by the REST endpoints after it."),
    _R("RECON-1", "MUST", "When the gateway restarts, clients following the portal's policy reconnect within it and receive the events published afterwards.", "Reconnect: auto-reconnects with backoff"),
    _R("RECON-2", "MUST", "When the network between a client and the gateway is cut and restored, the client notices within the ping timeout, reconnects within the policy, and events flow again."),
    _R("RECON-3", "MUST", "Events published while the gateway is down are delivered once it is back, to the clients connected by then."),
    _R("RECON-4", "SHOULD", "A client disconnected for less than 2 minutes misses no event published meanwhile (connection state recovery or replay)."),
    _R("RECON-5", "MUST", "A reconnect storm is absorbed: 200 clients reconnecting at once after a restart are all accepted within the policy."),
    _R("FAULT-1", "MUST", "After a RabbitMQ restart the gateway resumes consuming within 30 s without being restarted; events published afterwards are delivered."),
    _R("FAULT-2", "MUST", "Malformed queue messages (not JSON, not an object, missing tenantId, type or data, unknown type, wrong field types, oversize) do not stop the gateway, are not redelivered forever, and are not dropped silently (dead-lettered, SHOULD to <queue>.dlq; with --lacks dead-letter-queue, each is named in the gateway's log by its AMQP message_id or its body's SHA-256); valid events published after them are delivered."),
    _R("FAULT-3", "MUST", "A gateway killed with SIGKILL while events are in flight loses none of them: each reaches its tenant's clients after the restart (at-least-once)."),
    _R("FAULT-4", "MUST", "A stalled client (connected, not reading) does not push other clients' deliveries over the budget."),
    _R("FAULT-5", "SHOULD", "The gateway refuses to start with a missing or weak (under 32 bytes) JWT secret."),
    _R("FAULT-6", "MUST", "A gateway started while its broker is unreachable (connection refused, or accepted and then reset) consumes within 30 s of the broker becoming reachable, without being restarted."),
    _R("FAULT-7", "SHOULD", "On SIGTERM with clients connected and events in flight, the gateway exits within the stop bound (--stop-grace-s, default 10 s: the deployment's grace period) and loses none of those events: each reaches its tenant's clients before the exit or after the restart."),
    _R("CLU-1", "MUST", "With the gateway running as several instances, each event reaches every client of its tenant, whichever instance the client is connected to and whichever instance consumed the event: tabs of one tenant spread over the instances all receive it."),
    _R("CLU-2", "MUST", "With several instances, no client receives an event twice: the instances deliver each event once between them (no instance emits its own copy of what another already delivered)."),
    _R("CLU-3", "MUST", "Tenant ids of every shape (room-like, unicode, very long) reach their clients on every instance as ordinary ids do: all instances name a tenant's room the same way."),
    _R("CLU-4", "MUST", "Isolation holds across instances: no client receives another tenant's event, whichever instances the tenants' clients are on and whichever instance consumed the event (the ISO-1 generators, run over the instances)."),
    _R("CLU-5", "MUST", "Killing one instance (SIGKILL): its clients reconnect to another instance within the portal's policy; the other instances' clients see no gap: every event published meanwhile reaches them (at-least-once), and none published before the kill or after its clients are back arrives twice."),
    _R("CLU-6", "MUST", "The REST endpoints answer the same data whichever instance serves them: what any instance consumed, every instance's REST shows."),
    _R("CLU-7", "MUST", "Per-tenant order holds across instances: a tenant's events reach each client in publish order (DLV-5), and a message's status updates in publish order (STAT-1), whichever instance consumed each."),
    _R("CLU-8", "SHOULD", "A client that reconnects to another instance within 2 minutes misses no event published meanwhile (RECON-4 across instances: the recovery state is shared, or events are replayed)."),
    _R("ROB-1", "MUST", "Malformed Socket.IO and Engine.IO packets from a connecting or connected client (unknown packet types, truncated or invalid JSON, non-array event payloads, reserved event names such as error, connect, disconnect, disconnecting, newListener, attachment placeholders with an out-of-range or non-numeric num, attachments that never arrive, binary frames where text is expected, unknown namespaces) never stop the gateway: the offending connection may be closed, another tenant's client keeps receiving its events within the latency budget, and a fresh handshake succeeds afterwards."),
    _R("ROB-2", "MUST", "Malformed HTTP and WebSocket input on the Engine.IO path (bad or missing EIO, transport or sid, unknown sids, polling POSTs with garbage or truncated bodies, two long-polls at once on one sid, upgrades with bad or very many headers, a reset in the middle of an upgrade or a body, WebSocket frames with invalid UTF-8, reserved bits, unknown opcodes or fragmented control frames) never stop the gateway: each is answered with a 4xx or a closed connection, never a 5xx, and other clients are unaffected."),
    _R("ROB-3", "MUST", "Errors leak nothing: no stack trace, no file path of the gateway's installation, not the JWT secret, not the AMQP URL or its credentials, in a connect_error, an HTTP error body or a WebSocket close reason."),
    _R("ROB-4", "MUST", "A message over the maxPayload the gateway advertises in its Engine.IO open packet (read at run time), sent by a connected client over websocket, closes that connection only: another tenant's client keeps receiving its events within the latency budget, and the gateway's memory does not grow with repeated attempts (the growth over a second round of attempts stays within the stated tolerance)."),
    _R("ROB-5", "MUST", "A burst of unauthenticated handshakes, and a burst of connections with one token, leave room for a legitimate client: each of its connects during the bursts is acknowledged within CONN-3's budget (1 s), and once the burst's connections have closed the gateway keeps no state for them (its memory does not grow over a second round of bursts beyond the stated tolerance)."),
    _R("ROB-6", "MUST", "Slow and silent clients are let go: a TCP connection that never completes its HTTP request (nothing sent, a request head cut short or trickled a line at a time, a body that never arrives in full), and an Engine.IO session that answers pings but never sends its Socket.IO CONNECT, are closed by the gateway within the silent-client bound (--silent-close-s, default 60 s), and while they are open a new client with a valid token still connects within CONN-3's 1 s."),
    _R("ROB-7", "MUST", "A client emitting events as fast as it can, from several tabs over websocket and polling (the portal emits none), does not push other tenants' deliveries over the latency budget, nor stop them; the gateway may close the flooding connections."),
    _R("ROB-8", "MUST", "Bad input does not flood the log: each malformed packet, frame or request (the classes of ROB-1 and ROB-2) adds at most 10 records and 8 KiB to the gateway's log, and a class that made it write a stack trace writes none when it is sent again (rate-limited or summarised logging is fine; a traceback per malformed frame is not)."),
)

BY_ID: dict[str, Requirement] = {r.id: r for r in REQUIREMENTS}
ACTIVE: tuple[Requirement, ...] = tuple(r for r in REQUIREMENTS if r.active)


@dataclass(frozen=True)
class Change:
    """One version of the catalogue: the IDs it added and retired (retired IDs are never reused)."""

    version: str
    added: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()
    note: str = ""


def ids(spec: str) -> tuple[str, ...]:
    """IDs from a compact list: ``"AUTH-1..3 DLV-7"`` is AUTH-1, AUTH-2, AUTH-3, DLV-7."""
    out: list[str] = []
    for part in spec.split():
        area, _, numbers = part.partition("-")
        first, _, last = numbers.partition("..")
        out += [f"{area}-{n}" for n in range(int(first), int(last or first) + 1)]
    return tuple(out)


def compact(requirement_ids: tuple[str, ...] | list[str]) -> str:
    """The inverse of ``ids``, for people: runs of numbers in one area as ``AUTH-1..11``."""
    out: list[str] = []
    for rid in requirement_ids:
        area, _, n = rid.partition("-")
        if out and out[-1].startswith(area + "-"):
            last_area, _, numbers = out[-1].partition("-")
            first, _, last = numbers.partition("..")
            if last_area == area and int(last or first) + 1 == int(n):
                out[-1] = f"{area}-{first}..{n}"
                continue
        out.append(rid)
    return ", ".join(out)


# The catalogue's history, oldest first; the last entry is the installed version. A change to
# the set of IDs (a requirement added, or retired) goes into a NEW entry at the end, e.g.
#     Change("2", added=("AUTH-12",), retired=("MET-2",), note="MET-2 split into MET-5 and MET-6"),
# so a config pinned to the previous version fails at start and lists exactly what changed.
# Rewording a requirement without changing what it means needs no new version.
CHANGELOG: tuple[Change, ...] = (
    Change("1", added=ids("CONN-1..3 AUTH-1..11 ORIG-1..2 DLV-1..8 TAB-1..2 ISO-1..4 STAT-1..3 MET-1..4 "
                          "REST-1..2 RECON-1..5 FAULT-1..5"),
           note="the first versioned catalogue"),
    Change("2", added=ids("AUTH-12 MET-5 REST-3"), retired=ids("MET-2"),
           note="one defect, one verdict: MET-2's emit is tied to its call in MET-5; REST-1's restart "
                "check is durability, REST-3; connection state recovery must not resume an expired token, AUTH-12"),
    Change("3", added=ids("CLU-1..8"),
           note="gateways with several instances: the cluster area, judged with --gateway-replicas 2 or more "
                "(SKIPPED with one instance)"),
    Change("4", added=ids("FAULT-6"),
           note="verdicts a gateway's team can act on: a gateway that cannot start before its broker has a "
                "requirement of its own, FAULT-6, and checks whose set-up met it say UNKNOWN, blocked by FAULT-6; "
                "late is not lost (an event is lost only once a later one reached the client); CLU-7 judges one "
                "tenant's burst consumed by several instances"),
    Change("5", added=ids("ORIG-3 FAULT-7"),
           note="issue 16: REST CORS from the portal's origin, a preflight that must allow Authorization; "
                "FAULT-2 without a dead-letter queue judged from the gateway's log; a graceful stop (SIGTERM) ends "
                "within the deployment's grace period and loses nothing in flight"),
    Change("6", added=ids("ROB-1..3"),
           note="issue 17: robustness against broken and hostile clients, part 1 (the crash classes): malformed "
                "packets, malformed HTTP and WebSocket input, and what errors reveal"),
    Change("7", added=ids("ROB-4..8"),
           note="issue 18: hostile and broken clients, part 2: over-size input, handshake and connection floods, "
                "slow and silent clients closed within a bound, client event floods, and malformed input that "
                "does not flood the log"),
)
CATALOGUE_VERSION: str = CHANGELOG[-1].version


def changes_since(version: str) -> tuple[list[str], list[str]]:
    """The IDs added and retired after ``version`` up to the installed one (KeyError if unknown)."""
    versions = [c.version for c in CHANGELOG]
    if version not in versions:
        raise KeyError(version)
    added: list[str] = []
    retired: list[str] = []
    for change in CHANGELOG[versions.index(version) + 1:]:
        added += [i for i in change.added if i not in added]
        retired += [i for i in change.retired if i not in retired]
    return [i for i in added if i not in retired], retired


def retired_in(requirement_id: str) -> str | None:
    """The catalogue version that retired this ID, if any."""
    return next((c.version for c in CHANGELOG if requirement_id in c.retired), None)


def get(requirement_id: str) -> Requirement:
    """The requirement with this ID; a clear error names the known IDs of its area."""
    req = BY_ID.get(requirement_id)
    if req is not None and req.active:
        return req
    area = requirement_id.split("-", 1)[0]
    near = [r.id for r in ACTIVE if r.area == area] or sorted(AREAS)
    if req is not None:
        raise KeyError(f"requirement {requirement_id!r} is retired ({req.retired}); known here: {', '.join(near)}")
    raise KeyError(f"unknown requirement {requirement_id!r}; known here: {', '.join(near)}")


def render_markdown() -> str:
    """CONFORMANCE.md's text."""
    lines = [
        "# Conformance requirements",
        "",
        f"Catalogue version {CATALOGUE_VERSION}.",
        "",
        "Generated from `harness/judging/catalogue.py` by `python -m realtime_conformance.harness.catalogue > CONFORMANCE.md`;",
        "a test fails when the two disagree. IDs are stable: they never change meaning and are never reused.",
        "A configuration can pin the catalogue version (`catalogue_version`); a run against another version",
        "stops at start and lists the IDs added and retired since (see the changelog at the end).",
        "",
        "MUST failures fail the run. SHOULD failures show as NON-STRICT and fail it only with `--strict`.",
        "Verdicts: PASS; FAIL; NON-STRICT (a SHOULD that failed); UNKNOWN (no evidence either way, such as a",
        "positive control that received nothing: never a pass); N/A (the target declares it lacks the",
        "capability); SKIPPED (excluded by configuration, with its reason); WAIVED (a failure accepted",
        "until a date by the user's waiver file). A run fails when any MUST is FAIL or UNKNOWN, or a",
        "waiver has expired. Items of the seed's manual checklist are given in brackets.",
        "",
    ]
    for area, title in AREAS.items():
        lines += [f"## {area}: {title}", ""]
        for req in (r for r in REQUIREMENTS if r.area == area):
            item = f" [{req.checklist}]" if req.checklist else ""
            if req.retired:
                lines.append(f"- ~~**{req.id}**~~ retired: {req.retired}. It said: {req.title}")
            else:
                lines.append(f"- **{req.id}** {req.level}: {req.title}{item}")
        lines.append("")
    lines += ["## Changelog", ""]
    for change in reversed(CHANGELOG):
        parts = [f"added {compact(change.added)}" if change.added else "",
                 f"retired {compact(change.retired)}" if change.retired else ""]
        what = "; ".join(p for p in parts if p)
        lines.append(f"- **{change.version}**" + (f" ({change.note})" if change.note else "") + f": {what}.")
    lines.append("")
    return "\n".join(lines)

