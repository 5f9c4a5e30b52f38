'use strict';
// A bare socket.io 4 server with connection state recovery, for tests/harness/test_recovery_client.py.
// Run with NODE_PATH=<examples/node-gateway/node_modules> PORT=<port> SKIP_MIDDLEWARES=0|1.
// Tokens starting with "expired" are refused with data.code token_expired. A client's
// "publish" event {event, data} is broadcast to room t1; "direct" {event, args} is sent to the
// emitting socket alone (no offset).

const http = require('node:http');
const { Server } = require('socket.io');

const server = http.createServer();
const io = new Server(server, {
  pingInterval: 1000,
  pingTimeout: 1000,
  connectionStateRecovery: { maxDisconnectionDuration: 60000, skipMiddlewares: process.env.SKIP_MIDDLEWARES === '1' },
});

io.use((socket, next) => {
  const token = (socket.handshake.auth || {}).token || '';
  if (token.startsWith('expired')) {
    const err = new Error('token expired');
    err.data = { code: 'token_expired' };
    return next(err);
  }
  return next();
});

io.on('connection', (socket) => {
  socket.join('t1');
  socket.on('publish', ({ event, data }) => io.to('t1').emit(event, data));
  socket.on('direct', ({ event, args }) => socket.emit(event, ...args));
});

server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
