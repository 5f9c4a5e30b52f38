'use strict';
// The Node example gateway, broken on purpose: connection state recovery skips authentication,
// as socket.io's defaults do (skipMiddlewares: true, and nothing vetting a resume before the
// session is restored). A reconnect with an expired token, its pid and its offset is resumed
// and sent what it missed (AUTH-12). Preloaded, so the gateway carries no switch to break itself:
//   node -r tests/broken/node/resume_expired.js examples/node-gateway/src/index.js

const path = require('node:path');

const recovery = require(path.resolve(__dirname, '../../../examples/node-gateway/src/recovery.js'));

const { recoveryOptions, guardedParser } = recovery;
recovery.recoveryOptions = (config) => ({ ...recoveryOptions(config), skipMiddlewares: true });
recovery.guardedParser = () => guardedParser(() => true);
