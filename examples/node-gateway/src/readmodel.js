'use strict';
// The read model behind the REST routes: conversations, messages and their furthest status,
// per tenant, in SQLite. It survives restarts (REST-1) and is written before an event is
// emitted and acked, so a refetch triggered by the event already sees it.

const Database = require('better-sqlite3');

// STAT-2: a status only moves forward; failed outranks everything and is final.
const RANK = { sent: 1, delivered: 2, read: 3, failed: 4 };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS conversations (
  tenant_id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  last_message TEXT,
  last_message_at TEXT,
  direction TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (tenant_id, conversation_id)
);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  sender TEXT,
  sender_name TEXT,
  body TEXT,
  media_url TEXT,
  sent_at TEXT,
  day TEXT,
  status TEXT,
  status_rank INTEGER NOT NULL DEFAULT 0,
  status_at TEXT,
  errors TEXT,
  UNIQUE (tenant_id, message_id)
);
`;

class ReadModel {
  constructor(file) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    const db = this.db;
    this.q = {
      touchConversation: db.prepare(`
        INSERT INTO conversations (tenant_id, conversation_id, last_message, last_message_at, direction, created_at)
        VALUES (@tenant, @conversation, @lastMessage, @lastMessageAt, @direction, @now)
        ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET
          last_message = COALESCE(excluded.last_message, last_message),
          last_message_at = COALESCE(excluded.last_message_at, last_message_at),
          direction = COALESCE(excluded.direction, direction)`),
      upsertMessage: db.prepare(`
        INSERT INTO messages (tenant_id, message_id, conversation_id, sender, sender_name, body, media_url, sent_at, day)
        VALUES (@tenant, @message, @conversation, @from, @fromName, @body, @mediaUrl, @sentAt, @day)
        ON CONFLICT (tenant_id, message_id) DO UPDATE SET
          conversation_id = excluded.conversation_id, sender = excluded.sender, sender_name = excluded.sender_name,
          body = excluded.body, media_url = excluded.media_url, sent_at = excluded.sent_at,
          day = COALESCE(day, excluded.day)`),
      placeholder: db.prepare(`
        INSERT INTO messages (tenant_id, message_id, conversation_id) VALUES (@tenant, @message, @conversation)
        ON CONFLICT (tenant_id, message_id) DO NOTHING`),
      advanceStatus: db.prepare(`
        UPDATE messages SET status = @status, status_rank = @rank, status_at = @at, errors = @errors
        WHERE tenant_id = @tenant AND message_id = @message AND status_rank < @rank`),
      conversations: db.prepare(`
        SELECT conversation_id, last_message, last_message_at, direction, created_at FROM conversations
        WHERE tenant_id = ? ORDER BY COALESCE(last_message_at, created_at) DESC, conversation_id`),
      conversation: db.prepare('SELECT 1 FROM conversations WHERE tenant_id = ? AND conversation_id = ?'),
      messages: db.prepare(`
        SELECT message_id, conversation_id, sender, sender_name, body, media_url, sent_at, status, status_at, errors
        FROM messages WHERE tenant_id = ? AND conversation_id = ? ORDER BY seq`),
      counts: db.prepare(`
        SELECT COUNT(*) AS active, COALESCE(SUM(direction = 'inbound'), 0) AS waiting
        FROM conversations WHERE tenant_id = ?`),
      today: db.prepare('SELECT COUNT(*) AS n FROM messages WHERE tenant_id = ? AND day = ?'),
    };
    this.applyTx = db.transaction((tenant, type, data) => this._apply(tenant, type, data));
  }

  /** Record one valid event; the caller emits it afterwards. */
  apply(tenant, type, data) {
    this.applyTx(tenant, type, data);
  }

  _apply(tenant, type, d) {
    const now = new Date().toISOString();
    if (type === 'new_message') {
      this.q.touchConversation.run({
        tenant, conversation: d.conversationId, lastMessage: d.message ?? null,
        lastMessageAt: d.timestamp, direction: 'inbound', now,
      });
      this.q.upsertMessage.run({
        tenant, message: d.messageId, conversation: d.conversationId, from: d.from ?? null,
        fromName: d.from_name ?? null, body: d.message ?? null, mediaUrl: d.media_url ?? null,
        sentAt: d.timestamp, day: now.slice(0, 10),
      });
    } else if (type === 'conversation_update') {
      this.q.touchConversation.run({
        tenant, conversation: d.conversationId, lastMessage: d.lastMessage ?? null,
        lastMessageAt: d.lastMessageAt ?? null, direction: d.direction ?? null, now,
      });
    } else if (type === 'status_update') {
      // A status may overtake its message on the queue: keep a row to hold it.
      this.q.placeholder.run({ tenant, message: d.messageId, conversation: d.conversationId });
      this.q.advanceStatus.run({
        tenant, message: d.messageId, status: d.status, rank: RANK[d.status], at: d.timestamp,
        errors: d.errors ? JSON.stringify(d.errors) : null,
      });
    }
    // metrics_update: the State Manager's numbers are forwarded, not stored.
  }

  conversations(tenant) {
    return this.q.conversations.all(tenant).map((r) => ({
      id: r.conversation_id,
      conversationId: r.conversation_id,
      lastMessage: r.last_message,
      lastMessageAt: r.last_message_at,
      direction: r.direction,
      createdAt: r.created_at,
    }));
  }

  /** The messages of one of the tenant's conversations, or null if it has no such conversation. */
  messages(tenant, conversationId) {
    const rows = this.q.messages.all(tenant, conversationId);
    if (rows.length === 0 && !this.q.conversation.get(tenant, conversationId)) return null;
    return rows.map((r) => ({
      messageId: r.message_id,
      conversationId: r.conversation_id,
      from: r.sender,
      from_name: r.sender_name,
      message: r.body,
      media_url: r.media_url,
      timestamp: r.sent_at,
      status: r.status,
      statusAt: r.status_at,
      errors: r.errors ? JSON.parse(r.errors) : undefined,
    }));
  }

  /** The tenant's dashboard numbers, in the shape of a metrics_update payload. */
  stats(tenant) {
    const now = new Date().toISOString();
    const { active, waiting } = this.q.counts.get(tenant);
    const { n } = this.q.today.get(tenant, now.slice(0, 10));
    return {
      activeConversations: active,
      waitingConversations: waiting,
      totalMessagesToday: n,
      avgResponseTime: 0, // this gateway sees no replies' timing; the State Manager's metrics carry it
      timestamp: now,
    };
  }

  close() {
    this.db.close();
  }
}

module.exports = { ReadModel, RANK };
