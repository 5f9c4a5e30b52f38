"""The REST read model: conversations and messages per tenant, in one SQLite file.

Fed by the consumer from new_message, conversation_update and status_update,
so the REST endpoints can answer while a client's socket is down (REST-1). WAL
mode and one transaction per queue message make it survive SIGKILL; the body
hash recorded in the same transaction makes a redelivered message a no-op
(at-least-once delivery without double counting).

Several gateway instances may open the same file (cluster mode): only the
instance holding the queue's single active consumer writes, all of them read.
So nothing a write depends on lives in process memory: the ordering counter is
a row read and written inside each write transaction, and the record of which
bodies were emitted (to skip a broker redelivery of one) is a table.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3}
FAILED = "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    body_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_message TEXT,
    last_message_at TEXT,
    direction TEXT,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE TABLE IF NOT EXISTS messages (
    tenant_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    sender TEXT,
    sender_name TEXT,
    body TEXT,
    media_url TEXT,
    timestamp TEXT,
    status TEXT,
    direction TEXT,
    received_epoch REAL,
    response_seconds REAL,
    recorded_day TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS emitted (
    body_hash TEXT PRIMARY KEY,
    emitted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (tenant_id, conversation_id, seq);
CREATE INDEX IF NOT EXISTS messages_by_day ON messages (tenant_id, recorded_day);
"""


@dataclass(frozen=True)
class Stats:
    """Dashboard numbers of one tenant (without the timestamp, so they compare)."""

    activeConversations: int
    waitingConversations: int
    totalMessagesToday: int
    avgResponseTime: float

    def as_payload(self, timestamp: str) -> dict[str, Any]:
        return {
            "activeConversations": self.activeConversations,
            "waitingConversations": self.waitingConversations,
            "totalMessagesToday": self.totalMessagesToday,
            "avgResponseTime": self.avgResponseTime,
            "timestamp": timestamp,
        }


def body_hash(body: bytes) -> str:
    """The idempotency key of a queue message."""
    return hashlib.sha256(body).hexdigest()


def furthest_status(current: str | None, new: str) -> str:
    """The status a message shows after ``new`` arrives (STAT-2). Patchable seam.

    sent < delivered < read; a lower rank arriving late changes nothing;
    failed is final and overrides anything that came before it.
    """
    if current == FAILED:
        return FAILED
    if new == FAILED or current is None:
        return new
    if STATUS_RANK.get(new, 0) > STATUS_RANK.get(current, 0):
        return new
    return current


def parse_time(value: object) -> float | None:
    """Epoch seconds from an ISO 8601 string (``Z`` allowed) or a number; None if unparseable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            return parse_time(float(value))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def utc_day(epoch: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if epoch is None else epoch))


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


EMITTED_KEEP_SECONDS = 24 * 3600  # a redelivery comes within minutes; older emitted marks are pruned


class ReadModel:
    """SQLite-backed conversations/messages store. Used from the event loop thread only."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        # A file written before the counter row existed starts from its highest seq.
        self._db.execute(
            "INSERT OR IGNORE INTO counters (name, value) SELECT 'seq', COALESCE(MAX(s), 0) FROM "
            "(SELECT MAX(seq) AS s FROM conversations UNION ALL SELECT MAX(seq) FROM messages)"
        )
        self._seq = 0  # valid only inside a write transaction (loaded by apply)
        self._marks = 0

    def close(self) -> None:
        self._db.close()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- writes ---------------------------------------------------------------------------

    def apply(self, envelope: dict[str, Any], body: bytes) -> bool:
        """Record one validated envelope; False when this exact body was applied before."""
        key = body_hash(body)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT OR IGNORE INTO applied (body_hash, tenant_id, applied_at) VALUES (?, ?, ?)",
                (key, envelope["tenantId"], time.time()),
            )
            if cur.rowcount == 0:
                db.execute("ROLLBACK")
                return False
            # Read under the write lock: another instance may have written since we last did.
            self._seq = int(db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0])
            kind = envelope["type"]
            tenant = envelope["tenantId"]
            data = envelope["data"]
            if kind == "new_message":
                self._new_message(tenant, data, envelope.get("timestamp"))
            elif kind == "conversation_update":
                self._conversation_update(tenant, data, envelope.get("timestamp"))
            elif kind == "status_update":
                self._status_update(tenant, data)
            db.execute("UPDATE counters SET value = ? WHERE name = 'seq'", (self._seq,))
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def mark_emitted(self, key: str) -> None:
        """Record that the body with hash ``key`` reached the Socket.IO adapter (any instance can see it)."""
        now = time.time()
        self._db.execute("INSERT OR REPLACE INTO emitted (body_hash, emitted_at) VALUES (?, ?)", (key, now))
        self._marks += 1
        if self._marks % 1000 == 0:
            self._db.execute("DELETE FROM emitted WHERE emitted_at < ?", (now - EMITTED_KEEP_SECONDS,))

    def was_emitted(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM emitted WHERE body_hash = ?", (key,)).fetchone() is not None

    def _ensure_conversation(self, tenant: str, conversation_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO conversations (tenant_id, conversation_id, seq) VALUES (?, ?, ?)",
            (tenant, conversation_id, self._next_seq()),
        )

    def _new_message(self, tenant: str, data: dict[str, Any], envelope_ts: object) -> None:
        conv = data["conversationId"]
        received = parse_time(data.get("timestamp")) or parse_time(envelope_ts) or time.time()
        self._ensure_conversation(tenant, conv)
        self._db.execute(
            "UPDATE conversations SET last_message = ?, last_message_at = ?, direction = 'inbound', seq = ? "
            "WHERE tenant_id = ? AND conversation_id = ?",
            (data.get("message"), data.get("timestamp"), self._next_seq(), tenant, conv),
        )
        existing = self._db.execute(
            "SELECT 1 FROM messages WHERE tenant_id = ? AND message_id = ?", (tenant, data["messageId"])
        ).fetchone()
        if existing:
            # A status_update got here first and created the row: fill in the content, keep the status.
            self._db.execute(
                "UPDATE messages SET conversation_id = ?, sender = ?, sender_name = ?, body = ?, media_url = ?, "
                "timestamp = ?, direction = 'inbound', received_epoch = ? WHERE tenant_id = ? AND message_id = ?",
                (conv, data.get("from"), data.get("from_name"), data.get("message"), data.get("media_url"),
                 data.get("timestamp"), received, tenant, data["messageId"]),
            )
        else:
            self._db.execute(
                "INSERT INTO messages (tenant_id, message_id, conversation_id, sender, sender_name, body, media_url, "
                "timestamp, status, direction, received_epoch, recorded_day, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 'inbound', ?, ?, ?)",
                (tenant, data["messageId"], conv, data.get("from"), data.get("from_name"), data.get("message"),
                 data.get("media_url"), data.get("timestamp"), received, utc_day(), self._next_seq()),
            )

    def _conversation_update(self, tenant: str, data: dict[str, Any], envelope_ts: object) -> None:
        conv = data["conversationId"]
        self._ensure_conversation(tenant, conv)
        sets, args = ["seq = ?"], [self._next_seq()]
        for column, key in (("last_message", "lastMessage"), ("last_message_at", "lastMessageAt"), ("direction", "direction")):
            if key in data:
                sets.append(f"{column} = ?")
                args.append(data[key])
        self._db.execute(
            f"UPDATE conversations SET {', '.join(sets)} WHERE tenant_id = ? AND conversation_id = ?",
            (*args, tenant, conv),
        )
        if data.get("direction") == "outbound":
            answered = parse_time(data.get("lastMessageAt")) or parse_time(envelope_ts) or time.time()
            # Every inbound message not yet answered is answered by this outbound update.
            self._db.execute(
                "UPDATE messages SET response_seconds = MAX(0, ? - received_epoch) "
                "WHERE tenant_id = ? AND conversation_id = ? AND direction = 'inbound' "
                "AND response_seconds IS NULL AND received_epoch IS NOT NULL AND received_epoch <= ?",
                (answered, tenant, conv, answered),
            )

    def _status_update(self, tenant: str, data: dict[str, Any]) -> None:
        conv = data["conversationId"]
        self._ensure_conversation(tenant, conv)
        row = self._db.execute(
            "SELECT status FROM messages WHERE tenant_id = ? AND message_id = ?", (tenant, data["messageId"])
        ).fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO messages (tenant_id, message_id, conversation_id, timestamp, status, direction, "
                "recorded_day, seq) VALUES (?, ?, ?, ?, ?, 'outbound', ?, ?)",
                (tenant, data["messageId"], conv, data.get("timestamp"), data["status"], utc_day(), self._next_seq()),
            )
            return
        status = furthest_status(row["status"], data["status"])
        if status != row["status"]:
            self._db.execute(
                "UPDATE messages SET status = ? WHERE tenant_id = ? AND message_id = ?",
                (status, tenant, data["messageId"]),
            )

    # -- reads ----------------------------------------------------------------------------

    def stats(self, tenant: str) -> Stats:
        """The dashboard numbers for ``tenant`` as of now (one snapshot, even while another instance writes)."""
        db = self._db
        db.execute("BEGIN")
        try:
            return self._stats(tenant)
        finally:
            db.execute("COMMIT")

    def _stats(self, tenant: str) -> Stats:
        db = self._db
        active = db.execute("SELECT COUNT(*) FROM conversations WHERE tenant_id = ?", (tenant,)).fetchone()[0]
        waiting = db.execute(
            "SELECT COUNT(*) FROM conversations WHERE tenant_id = ? AND direction = 'inbound'", (tenant,)
        ).fetchone()[0]
        today = db.execute(
            "SELECT COUNT(*) FROM messages WHERE tenant_id = ? AND recorded_day = ?", (tenant, utc_day())
        ).fetchone()[0]
        avg = db.execute(
            "SELECT AVG(response_seconds) FROM messages WHERE tenant_id = ? AND response_seconds IS NOT NULL",
            (tenant,),
        ).fetchone()[0]
        return Stats(int(active), int(waiting), int(today), round(float(avg or 0.0), 3))

    def conversations(self, tenant: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT conversation_id, last_message, last_message_at, direction FROM conversations "
            "WHERE tenant_id = ? ORDER BY seq DESC",
            (tenant,),
        ).fetchall()
        return [
            {"id": r["conversation_id"], "conversationId": r["conversation_id"], "lastMessage": r["last_message"],
             "lastMessageAt": r["last_message_at"], "direction": r["direction"]}
            for r in rows
        ]

    def has_conversation(self, tenant: str, conversation_id: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM conversations WHERE tenant_id = ? AND conversation_id = ?", (tenant, conversation_id)
        ).fetchone() is not None

    def messages(self, tenant: str, conversation_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM messages WHERE tenant_id = ? AND conversation_id = ? ORDER BY seq",
            (tenant, conversation_id),
        ).fetchall()
        return [
            {"messageId": r["message_id"], "conversationId": r["conversation_id"], "from": r["sender"],
             "from_name": r["sender_name"], "message": r["body"], "media_url": r["media_url"],
             "timestamp": r["timestamp"], "status": r["status"]}
            for r in rows
        ]

    def dump(self) -> str:
        """Debug aid: all tables as JSON."""
        out = {t: [dict(r) for r in self._db.execute(f"SELECT * FROM {t}")] for t in ("conversations", "messages")}
        return json.dumps(out, default=str)
