'use strict';
// What changes when several instances run behind a load balancer (REDIS_URL set).
//
// - Room broadcasts go through the Redis Streams adapter: every emit is appended to one Redis
//   stream that every instance reads, so a tenant's tabs get it whichever instance they are on.
//   A stream (unlike pub/sub) keeps the recent emits, so a client can resume its session on
//   any instance: the session is kept in Redis and the missed events are read back from the
//   stream (connection state recovery across instances, RECON-4).
// - Sessions are written to Redis when a socket connects and refreshed while it lives, not
//   only when it disconnects: an instance that is killed never gets to write them, and its
//   clients must still be able to resume elsewhere.
// - An emit resolves only once Redis has it, and rejects when Redis cannot take it, so the
//   consumer acks a message only after every instance can see its event.
// - The queue is declared with single active consumer (consumer.js) and the "last stats
//   emitted to a tenant" are one Redis entry swapped atomically (metrics.js).

// `redis` and the streams adapter are required where used: one instance needs neither installed.
const { Adapter, MessageType } = require('socket.io-adapter');
const recovery = require('./recovery');
const log = require('./log');

const PREFIX = 'agent-portal-gateway';
const STREAM = `${PREFIX}:emits`;
const SESSION_PREFIX = `${PREFIX}:session:`;
const LAST_STATS_PREFIX = `${PREFIX}:last-stats:`;
const LAST_STATS_TTL_MS = 24 * 3600 * 1000;
const SESSION_REFRESH_MS = 30000;
const REPLAY_BATCH = 1000;
const REPLAY_MAX_BATCHES = 100; // 100,000 entries at most; a longer backlog is refused, not half replayed
const CONNECT_TIMEOUT_MS = 15000;

class FanoutUnavailable extends Error {}

/** A connected node-redis client, or an error naming REDIS_URL after a bounded wait. */
async function connectRedis(url) {
  const { createClient } = require('redis');
  const client = createClient({
    url,
    socket: { connectTimeout: 5000, reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000) },
  });
  let lastError = null;
  client.on('error', (err) => {
    if (!lastError || lastError.message !== err.message) log.warn('redis error', { error: err.message });
    lastError = err;
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(
      `cannot reach Redis at REDIS_URL within ${CONNECT_TIMEOUT_MS / 1000} s (${lastError ? lastError.message : 'no answer'}): `
      + 'start Redis or fix REDIS_URL, or leave REDIS_URL empty for a single instance',
    )), CONNECT_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.connect(), timeout]);
  } catch (err) {
    client.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return client;
}

// Stream ids are "<ms>-<seq>"; compared as numbers, never as strings.
function parseId(id) {
  const [ms, seq] = String(id).split('-');
  return [BigInt(ms), BigInt(seq || 0)];
}
function idAfter(a, b) {
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  return am > bm || (am === bm && as > bs);
}

function reachesRooms(sessionRooms, opts) {
  const included = opts.rooms.length === 0 || sessionRooms.some((room) => opts.rooms.includes(room));
  return included && sessionRooms.every((room) => !opts.except.includes(room));
}

/** Field/value pairs of a raw XINFO STREAM reply, as a plain object. */
function pairs(reply) {
  const out = {};
  if (!Array.isArray(reply)) return out;
  for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = reply[i + 1];
  return out;
}

/**
 * The adapter factory for socket.io's `adapter` option: the Redis Streams adapter, with
 * sessions stored as JSON under SESSION_PREFIX, restored only for the tenant that owned them,
 * and emits that reject when Redis does not take them.
 */
function streamsAdapter(client, { maxLen, windowMs }) {
  const { createAdapter } = require('@socket.io/redis-streams-adapter');
  const factory = createAdapter(client, { streamName: STREAM, maxLen, onlyPlaintext: true });
  const ttlMs = windowMs + SESSION_REFRESH_MS;

  return function ClusterAdapter(nsp) {
    const adapter = factory(nsp);

    adapter.persistSession = (session) => {
      const value = JSON.stringify({ sid: session.sid, pid: session.pid, rooms: session.rooms, data: session.data });
      client.sendCommand(['SET', SESSION_PREFIX + session.pid, value, 'PX', String(ttlMs)])
        .catch((err) => log.warn('cannot store recovery session', { error: err.message }));
    };

    adapter.restoreSession = async (pid, raw) => {
      const { tenantId, offset } = recovery.readResumeOffset(raw);
      // Looked at before it is taken: another tenant's token naming this pid must not destroy it.
      const peek = await client.sendCommand(['GET', SESSION_PREFIX + pid]);
      if (!peek || !recovery.sameTenant(JSON.parse(peek), tenantId)) return null;
      const stored = await client.sendCommand(['GETDEL', SESSION_PREFIX + pid]); // null: resumed elsewhere meanwhile
      if (!stored) return null;
      const session = JSON.parse(stored);
      if (!recovery.sameTenant(session, tenantId)) return null;
      const sinceConnect = offset === recovery.SINCE_CONNECT;
      if (!sinceConnect && !/^[0-9]+-[0-9]+$/.test(String(offset))) return null;
      const connectedAt = session.data && session.data.connectedAt;
      if (sinceConnect && typeof connectedAt !== 'number') return null;
      // Replay starts after the client's offset, or at the socket's first connect (same clock as Redis's ids).
      const from = sinceConnect ? `${connectedAt}-0` : offset;
      // Part of what it missed is gone: a fresh start (recovered: false) rather than a partial replay.
      if (await trimmed(from, sinceConnect)) return null;
      let start = sinceConnect ? from : `(${offset}`;
      const missedPackets = [];
      for (let batch = 0; batch < REPLAY_MAX_BATCHES; batch += 1) {
        const entries = await client.xRange(STREAM, start, '+', { COUNT: REPLAY_BATCH });
        for (const { id, message } of entries) {
          if (message.nsp !== nsp.name || Number(message.type) !== MessageType.BROADCAST || !message.data) continue;
          const { packet, opts } = JSON.parse(message.data);
          if (packet.type === 2 && packet.id === undefined && reachesRooms(session.rooms, opts)) {
            missedPackets.push([...packet.data, id]);
          }
        }
        if (entries.length < REPLAY_BATCH) return { ...session, missedPackets };
        start = `(${entries[entries.length - 1].id}`;
      }
      return null;
    };

    // True when an entry the replay needs (after `id`, or from `id` on when inclusive) may have
    // been trimmed out of the stream by MAXLEN.
    async function trimmed(id, inclusive) {
      const info = pairs(await client.sendCommand(['XINFO', 'STREAM', STREAM]).catch(() => null));
      const deleted = info['max-deleted-entry-id']; // Redis >= 7
      if (deleted !== undefined) return idAfter(String(deleted), id) || (inclusive && String(deleted) === id);
      const first = info['first-entry']; // older Redis: the oldest entry kept is newer than the start
      return Array.isArray(first) && idAfter(String(first[0]), id);
    }

    // ClusterAdapter.broadcast logs and forgets a failed publish; this one rejects, so the
    // caller can keep the queue message. The last emit's promise is kept for emitToTenant.
    adapter.broadcast = function broadcast(packet, opts) {
      const done = (async () => {
        if (!(opts.flags && opts.flags.local)) {
          let offset;
          try {
            offset = await this.publishAndReturnOffset({
              type: MessageType.BROADCAST,
              data: { packet, opts: { rooms: [...opts.rooms], except: [...opts.except], flags: opts.flags } },
            });
          } catch (err) {
            throw new FanoutUnavailable(`cannot append the emit to the Redis stream: ${err.message}`);
          }
          this.addOffsetIfNecessary(packet, opts, offset);
        }
        Adapter.prototype.broadcast.call(this, packet, opts);
      })();
      done.catch(() => {}); // awaited by emitToTenant's callers; never an unhandled rejection
      this.lastBroadcast = done;
      return done;
    };

    return adapter;
  };
}

/** Write a connected socket's session now and every SESSION_REFRESH_MS, so it survives a killed instance. */
function keepSessionStored(socket) {
  const store = () => socket.nsp.adapter.persistSession({
    sid: socket.id, pid: socket.pid, rooms: [...socket.rooms], data: socket.data,
  });
  store();
  const timer = setInterval(store, SESSION_REFRESH_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** Last stats emitted to each tenant, shared by all instances: swap returns the previous value. */
class SharedLastStats {
  constructor(client) {
    this.client = client;
  }

  async swap(tenantId, key) {
    return this.client.sendCommand(['SET', LAST_STATS_PREFIX + tenantId, key, 'PX', String(LAST_STATS_TTL_MS), 'GET']);
  }
}

module.exports = { connectRedis, streamsAdapter, keepSessionStored, SharedLastStats, FanoutUnavailable, STREAM };
