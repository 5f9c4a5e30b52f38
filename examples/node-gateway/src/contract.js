'use strict';
// The envelope and payload rules of contract/asyncapi.yaml, checked by hand.
// validate() returns null for a valid envelope, or the reason it is not (the x-dlq-reason).

const LIMITS = { maxEnvelopeBytes: 262144, maxTenantIdLength: 256, maxMessageTextLength: 4096 };
const TYPES = ['new_message', 'conversation_update', 'status_update', 'metrics_update'];
const STATUSES = ['sent', 'delivered', 'read', 'failed'];

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const chars = (s) => [...s].length; // JSON Schema lengths count code points
const nonEmpty = (v) => typeof v === 'string' && v.length > 0;

function optionalString(data, key, { nullable = false, maxLength } = {}) {
  if (!(key in data)) return null;
  const v = data[key];
  if (v === null && nullable) return null;
  if (typeof v !== 'string') return `data.${key} must be a string${nullable ? ' or null' : ''}`;
  if (maxLength !== undefined && chars(v) > maxLength) return `data.${key} is longer than ${maxLength} characters`;
  return null;
}

function requireStrings(data, keys) {
  for (const key of keys) {
    if (!nonEmpty(data[key])) return `data.${key} must be a non-empty string`;
  }
  return null;
}

const CHECKS = {
  new_message(d) {
    return requireStrings(d, ['conversationId', 'messageId', 'timestamp'])
      || optionalString(d, 'from')
      || optionalString(d, 'from_name', { nullable: true })
      || optionalString(d, 'message', { nullable: true, maxLength: LIMITS.maxMessageTextLength })
      || optionalString(d, 'media_url', { nullable: true })
      || ('isNewConversation' in d && typeof d.isNewConversation !== 'boolean' ? 'data.isNewConversation must be a boolean' : null);
  },
  conversation_update(d) {
    return requireStrings(d, ['conversationId'])
      || optionalString(d, 'id')
      || optionalString(d, 'lastMessage', { nullable: true, maxLength: LIMITS.maxMessageTextLength })
      || optionalString(d, 'lastMessageAt')
      || ('direction' in d && !['inbound', 'outbound'].includes(d.direction) ? 'data.direction must be inbound or outbound' : null);
  },
  status_update(d) {
    const missing = requireStrings(d, ['messageId', 'conversationId', 'timestamp']);
    if (missing) return missing;
    if (!STATUSES.includes(d.status)) return `data.status must be one of ${STATUSES.join(', ')}`;
    if ('errors' in d) {
      if (!Array.isArray(d.errors)) return 'data.errors must be an array';
      for (const e of d.errors) {
        if (!isObject(e) || !Number.isInteger(e.code) || typeof e.title !== 'string') {
          return 'data.errors[] needs an integer code and a string title';
        }
        if ('message' in e && typeof e.message !== 'string') return 'data.errors[].message must be a string';
      }
    }
    return null;
  },
  metrics_update(d) {
    for (const key of ['activeConversations', 'waitingConversations', 'totalMessagesToday']) {
      if (!Number.isInteger(d[key]) || d[key] < 0) return `data.${key} must be an integer >= 0`;
    }
    if (typeof d.avgResponseTime !== 'number' || !Number.isFinite(d.avgResponseTime) || d.avgResponseTime < 0) {
      return 'data.avgResponseTime must be a number >= 0';
    }
    return requireStrings(d, ['timestamp']);
  },
};

/** Parse and validate one AMQP body: {envelope} or {reason}. */
function parse(body) {
  if (body.length > LIMITS.maxEnvelopeBytes) return { reason: `body is ${body.length} bytes (limit ${LIMITS.maxEnvelopeBytes})` };
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return { reason: 'body is not UTF-8' };
  }
  let envelope;
  try {
    envelope = JSON.parse(text);
  } catch {
    return { reason: 'body is not JSON' };
  }
  const reason = validate(envelope);
  return reason ? { reason } : { envelope };
}

function validate(e) {
  if (!isObject(e)) return 'envelope is not a JSON object';
  for (const key of ['type', 'tenantId', 'data', 'timestamp']) {
    if (!(key in e)) return `envelope has no ${key}`;
  }
  if (!TYPES.includes(e.type)) return `unknown type ${JSON.stringify(String(e.type)).slice(0, 80)}`;
  if (!nonEmpty(e.tenantId)) return 'tenantId must be a non-empty string';
  if (chars(e.tenantId) > LIMITS.maxTenantIdLength) return `tenantId is longer than ${LIMITS.maxTenantIdLength} characters`;
  if (!nonEmpty(e.timestamp)) return 'timestamp must be a non-empty string';
  if (!isObject(e.data)) return 'data is not an object';
  return CHECKS[e.type](e.data);
}

module.exports = { parse, validate, LIMITS, TYPES };
