'use strict';
// The Socket.IO side: who may connect, which room they join, when they are let go.

const { Server } = require('socket.io');
const { verifyToken } = require('./auth');
const recovery = require('./recovery');
const cluster = require('./cluster');
const log = require('./log');

const MAX_TIMER_MS = 2 ** 31 - 1;

const roomOf = (tenantId) => `tenant:${tenantId}`;

/**
 * The Socket.IO server. `redis` (a connected client) puts it in cluster mode: the Redis Streams
 * adapter carries emits and recovery sessions between instances (cluster.js).
 */
function createSocketServer(httpServer, config, redis = null) {
  const allowed = new Set(config.corsOrigins);
  // Browsers always send Origin; other clients (services, tests, curl) send none and are let in.
  const originAllowed = (origin) => origin === undefined || allowed.has(origin);

  // A resume is considered only with a token valid now; the adapter then restores the session
  // only if it belonged to this token's tenant (recovery.js).
  const mayResume = (auth) => {
    try {
      return typeof auth.pid === 'string' && verifyToken(auth.token, config.jwt).tenantId;
    } catch {
      return false;
    }
  };
  const adapter = redis
    ? cluster.streamsAdapter(redis, { maxLen: config.redisStreamMaxLen, windowMs: config.recoveryWindowMs })
    : recovery.ResumableAdapter;

  const io = new Server(httpServer, {
    path: '/socket.io/',
    serveClient: false,
    pingInterval: config.pingIntervalMs,
    pingTimeout: config.pingTimeoutMs,
    connectTimeout: config.connectTimeoutMs, // an Engine.IO session without a CONNECT is closed (ROB-6)
    // CORS headers only; the refusal is allowRequest's job.
    cors: { origin: [...allowed], credentials: true },
    // Every Engine.IO handshake, polling or websocket, is refused from a foreign Origin (ORIG-2).
    allowRequest: (req, callback) => {
      const origin = req.headers.origin;
      if (originAllowed(origin)) return callback(null, true);
      log.warn('handshake refused: origin not allowed', { origin });
      return callback('origin not allowed', false);
    },
    connectionStateRecovery: recovery.recoveryOptions(config),
    adapter,
    parser: recovery.guardedParser(mayResume),
  });

  // allowRequest sees handshakes only; requests of an open session (polling with a sid, the
  // websocket upgrade) are held to the same rule here.
  io.engine.use((req, res, next) => {
    const ofSession = new URL(req.url, 'http://gateway').searchParams.has('sid');
    if (!ofSession || originAllowed(req.headers.origin)) return next();
    log.warn('request refused: origin not allowed', { origin: req.headers.origin });
    return next(new Error('origin not allowed'));
  });

  // The token is read from auth.token only: never the query string (AUTH-9) or other auth fields.
  io.use((socket, next) => {
    const auth = socket.handshake.auth || {};
    try {
      const { tenantId, exp } = verifyToken(auth.token, config.jwt);
      socket.data.tenantId = tenantId;
      socket.data.exp = exp;
      next();
    } catch (e) {
      const err = new Error(e.message);
      err.data = { code: e.code || 'token_invalid' };
      next(err);
    }
  });

  io.on('connection', (socket) => {
    const { tenantId, exp } = socket.data;
    const untilExpiry = exp * 1000 - Date.now();
    if (untilExpiry <= 0) {
      socket.disconnect(true);
      return;
    }
    // When this socket first joined its rooms: a resume without an offset replays from here.
    if (!socket.recovered) socket.data.connectedAt = Date.now();
    socket.join(roomOf(tenantId));
    const forget = redis ? cluster.keepSessionStored(socket) : () => {};
    // AUTH-8: the connection ends with its token.
    const timer = setTimeout(() => socket.disconnect(true), Math.min(untilExpiry, MAX_TIMER_MS));
    socket.on('disconnect', (reason) => {
      clearTimeout(timer);
      forget(); // socket.io stores the session itself on a recoverable disconnect
      log.info('socket disconnected', { sid: socket.id, reason });
    });
    // No client event is handled: a client cannot join rooms or name another tenant (ISO-2).
    // The portal emits none, so a client that floods them is let go instead of served (ROB-7).
    let budget = config.clientEventsPerSecond;
    let windowStart = Date.now();
    socket.onAny(() => {
      const now = Date.now();
      if (now - windowStart >= 1000) {
        windowStart = now;
        budget = config.clientEventsPerSecond;
      }
      budget -= 1;
      if (budget === -1) {
        log.warn('client event flood: disconnecting', { sid: socket.id, limitPerSecond: config.clientEventsPerSecond });
        // Dropped at once: a graceful WebSocket close would keep reading (and parsing) what the
        // flooder has already queued until its close frame comes.
        const ws = socket.conn.transport && socket.conn.transport.socket;
        socket.disconnect(true);
        if (ws && typeof ws.terminate === 'function') ws.terminate();
      }
    });
    log.info('socket connected', { sid: socket.id, recovered: socket.recovered, transport: socket.conn.transport.name });
  });

  /**
   * Emit `data` as event `type` to every client of the tenant. Resolves once the emit is
   * handed over (in cluster mode: once Redis has it; rejects with FanoutUnavailable if not).
   */
  const emitToTenant = (tenantId, type, data) => {
    io.to(roomOf(tenantId)).emit(type, data);
    return redis ? io.of('/').adapter.lastBroadcast : Promise.resolve();
  };

  return { io, emitToTenant };
}

module.exports = { createSocketServer, roomOf };
