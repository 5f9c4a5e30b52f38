'use strict';
// The REST routes of the contract's x-rest: what the portal refetches when an event arrives,
// and its manual refresh path while the socket is down (REST-1). Same token rules as the
// handshake; every refusal is a 401 (REST-2); every answer is the token's tenant's (ISO-4).

const express = require('express');
const { verifyToken, bearer } = require('./auth');

function createApp({ config, readModel, metrics, consumer }) {
  const app = express();
  app.disable('x-powered-by');
  const allowed = new Set(config.corsOrigins);

  app.use((req, res, next) => {
    const origin = req.headers.origin;
    if (origin && allowed.has(origin)) {
      res.set('Access-Control-Allow-Origin', origin);
      res.set('Vary', 'Origin');
      res.set('Access-Control-Allow-Credentials', 'true');
      res.set('Access-Control-Allow-Headers', 'Authorization, Content-Type');
      res.set('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
    }
    if (req.method === 'OPTIONS') return res.sendStatus(204);
    return next();
  });

  app.get('/health', (req, res) => {
    res.json({ status: 'ok', consumer: consumer.state, queue: config.queue });
  });

  const api = express.Router();
  api.use((req, res, next) => {
    try {
      req.tenantId = verifyToken(bearer(req.headers.authorization), config.jwt).tenantId;
      next();
    } catch (e) {
      res.status(401).json({ error: e.code || 'token_invalid' });
    }
  });
  // Express 4 does not catch a rejected handler: pass the error on to the 500 handler.
  api.get('/dashboard/stats', (req, res, next) => metrics.read(req.tenantId).then((s) => res.json(s), next));
  api.post('/dashboard/refresh', (req, res, next) => metrics.push(req.tenantId).then((s) => res.json(s), next));
  api.get('/conversations', (req, res) => res.json({ conversations: readModel.conversations(req.tenantId) }));
  api.get('/conversations/:conversationId/messages', (req, res) => {
    const { conversationId } = req.params;
    const messages = readModel.messages(req.tenantId, conversationId);
    if (messages === null) return res.status(404).json({ error: 'conversation_not_found' });
    return res.json({ conversationId, messages });
  });
  app.use('/api', api);

  app.use((req, res) => res.status(404).json({ error: 'not_found' }));
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => res.status(500).json({ error: 'internal_error' }));
  return app;
}

module.exports = { createApp };
