'use strict';
// Configuration from the environment. This service's own names, not the seed's:
// a missing or weak secret stops it before it listens (FAULT-5).

const MIN_SECRET_BYTES = { HS256: 32, HS384: 48, HS512: 64 };

class ConfigError extends Error {}

function intFrom(env, name, fallback, min) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is not an integer >= ${min}`);
  }
  return value;
}

function listFrom(env, name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  return raw.split(',').map((s) => s.trim()).filter(Boolean);
}

function load(env = process.env) {
  const algorithm = env.JWT_ALGORITHM || 'HS256';
  if (!(algorithm in MIN_SECRET_BYTES)) {
    throw new ConfigError(`JWT_ALGORITHM=${algorithm} is not one of ${Object.keys(MIN_SECRET_BYTES).join(', ')}`);
  }
  const secret = env.JWT_SECRET_KEY;
  if (!secret) {
    throw new ConfigError('JWT_SECRET_KEY is not set; refusing to start without the secret tokens are verified with');
  }
  const need = MIN_SECRET_BYTES[algorithm];
  if (Buffer.byteLength(secret, 'utf8') < need) {
    throw new ConfigError(`JWT_SECRET_KEY is ${Buffer.byteLength(secret, 'utf8')} bytes; ${algorithm} needs at least ${need} (RFC 7518 3.2)`);
  }
  const queue = env.EVENTS_QUEUE || 'waba.agent-portal.events';
  const redisUrl = (env.REDIS_URL || '').trim(); // empty: one instance, nothing shared
  if (redisUrl && !/^(redis|rediss):\/\//i.test(redisUrl)) {
    throw new ConfigError(`REDIS_URL must start with redis:// or rediss:// (e.g. redis://127.0.0.1:6379/0), or be empty for a single instance`);
  }
  return {
    host: env.SOCKET_HOST || '0.0.0.0',
    port: intFrom(env, 'SOCKET_PORT', 3015, 0),
    amqpUrl: env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/',
    queue,
    deadLetterQueue: `${queue}.dlq`,
    prefetch: intFrom(env, 'AMQP_PREFETCH', 50, 1),
    jwt: {
      secret,
      algorithm,
      tenantClaim: env.JWT_TENANT_CLAIM || 'tenant_id',
      audience: env.JWT_AUDIENCE || 'agent-portal',
    },
    corsOrigins: listFrom(env, 'CORS_ORIGINS', ['http://localhost:3012', 'http://localhost:3014']),
    dbFile: env.DB_FILE || 'agent-portal.sqlite3',
    pingIntervalMs: intFrom(env, 'ENGINE_PING_INTERVAL_MS', 25000, 100),
    pingTimeoutMs: intFrom(env, 'ENGINE_PING_TIMEOUT_MS', 20000, 100),
    recoveryWindowMs: intFrom(env, 'RECOVERY_WINDOW_MS', 2 * 60 * 1000, 0),
    // Slow and silent clients (ROB-6): an HTTP request (head and body) must arrive within this, and
    // an Engine.IO session must send its Socket.IO CONNECT within that. Node's own defaults (60 s
    // for the head, checked every 30 s; 300 s for the body) and socket.io's 45 s are looser.
    requestTimeoutMs: intFrom(env, 'HTTP_REQUEST_TIMEOUT_MS', 30000, 1000),
    connectTimeoutMs: intFrom(env, 'SOCKET_CONNECT_TIMEOUT_MS', 30000, 100),
    redisUrl,
    // Emits kept in the Redis stream for recovery: enough for the recovery window at peak rate.
    redisStreamMaxLen: intFrom(env, 'REDIS_STREAM_MAXLEN', 100000, 1000),
    // Client events a socket may emit per second before it is disconnected (the portal emits none).
    clientEventsPerSecond: intFrom(env, 'CLIENT_EVENTS_PER_SECOND', 50, 1),
  };
}

module.exports = { load, ConfigError };
