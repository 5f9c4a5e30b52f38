// Variant: the Node gateway on socket.io 4.6.1, before the fix of CVE-2024-38355 (a client packet
// that makes the server socket emit `error` with no listener kills the process). Preload with
//   node -r tests/broken/node/old_socketio.js examples/node-gateway/src/index.js
// after `npm ci` in tests/broken/node/old-socketio (engine.io, socket.io-parser and ws there are
// pinned to fixed releases, so this copy has one defect). The gateway brings its own parser
// (recovery.guardedParser), so the socket.io-parser advisories cannot show here.
'use strict';
const Module = require('node:module');
const path = require('node:path');

const OLD = path.join(__dirname, 'old-socketio', 'node_modules', 'socket.io');
const resolve = Module._resolveFilename;
Module._resolveFilename = function resolveOld(request, ...rest) {
  return resolve.call(this, request === 'socket.io' ? OLD : request, ...rest);
};
