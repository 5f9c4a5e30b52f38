'use strict';
// Agent-portal gateway: consumes the State Manager's events from RabbitMQ and emits each one
// to its tenant's Socket.IO room; serves the portal's REST reads from a SQLite read model.

const http = require('node:http');
const config = require('./config');
const log = require('./log');
const { ReadModel } = require('./readmodel');
const { createSocketServer } = require('./sockets');
const { Metrics } = require('./metrics');
const { Consumer } = require('./consumer');
const { createApp } = require('./rest');
const cluster = require('./cluster');

const SHUTDOWN_GRACE_MS = 8000;

async function main() {
  let settings;
  try {
    settings = config.load();
  } catch (err) {
    if (err instanceof config.ConfigError) {
      log.error(`configuration refused: ${err.message}`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }

  // Cluster mode (REDIS_URL): the Socket.IO adapter, recovery sessions and last stats live in Redis.
  let redis = null;
  if (settings.redisUrl) {
    try {
      redis = await cluster.connectRedis(settings.redisUrl);
    } catch (err) {
      log.error(`configuration refused: ${err.message}`);
      process.exit(78);
    }
  }

  const readModel = new ReadModel(settings.dbFile);
  // The Socket.IO server is attached after the HTTP app (it must see the app's handler to pass
  // it every non-/socket.io/ request), but the app's metrics emit through it: bind late.
  let emitToTenant = () => {};
  const emit = (tenantId, type, data) => emitToTenant(tenantId, type, data);
  const metrics = new Metrics(readModel, emit, redis && new cluster.SharedLastStats(redis));

  const consumer = new Consumer({
    url: settings.amqpUrl,
    queue: settings.queue,
    deadLetterQueue: settings.deadLetterQueue,
    prefetch: settings.prefetch,
    singleActiveConsumer: Boolean(redis),
    onFatal: (err) => {
      log.error(`configuration refused: ${err.message}`);
      process.exit(78);
    },
    onEnvelope: async ({ type, tenantId, data }) => {
      readModel.apply(tenantId, type, data);
      await emit(tenantId, type, data);
      if (type === 'new_message' && data.isNewConversation === true) await metrics.push(tenantId); // MET-4
    },
  });

  const server = http.createServer({
    // A request that never completes is cut at the deadline (ROB-6), and the deadline is checked
    // every second rather than Node's 30, so it holds to within a second.
    requestTimeout: settings.requestTimeoutMs,
    headersTimeout: settings.requestTimeoutMs,
    connectionsCheckingInterval: 1000,
  }, createApp({ config: settings, readModel, metrics, consumer }));
  const sockets = createSocketServer(server, settings, redis);
  const { io } = sockets;
  emitToTenant = sockets.emitToTenant;
  server.listen(settings.port, settings.host, () => {
    const { port } = server.address();
    log.info('listening', {
      host: settings.host, port, queue: settings.queue, origins: settings.corsOrigins, cluster: Boolean(redis),
    });
  });
  consumer.start();

  let stopping = false;
  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    const watchdog = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    watchdog.unref();
    await consumer.stop(); // no new message; the one in hand is emitted and acked first
    const closing = io.close(); // ends every socket as a transport close: portals reconnect
    setTimeout(() => server.closeAllConnections(), 1000).unref();
    await closing;
    // Sessions socket.io stored on the way out must reach Redis before the process ends.
    if (redis) await redis.close().catch(() => {});
    readModel.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  log.error('start-up failed', { error: err.message });
  process.exit(1);
});
