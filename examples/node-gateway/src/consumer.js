'use strict';
// The RabbitMQ side. One durable queue (DLV-8), messages handled one at a time in queue
// order (DLV-5): validate, record, emit, and only then ack (FAULT-3). A message that does
// not validate goes to <queue>.dlq with its reason and is acked, never requeued (FAULT-2).
// A lost connection, or a broker restart, is followed by a new connection and a new
// consumer, with backoff, for as long as the process runs (FAULT-1).
// With several instances (singleActiveConsumer) the queue is declared with RabbitMQ's single
// active consumer: all instances subscribe, one receives at a time, in order; when it dies its
// unacked messages go to the next one. An emit that Redis did not take leaves the message
// unacked: the session is dropped and the broker delivers it again.

const crypto = require('node:crypto');
const amqp = require('amqplib');
const contract = require('./contract');
const log = require('./log');
const { FanoutUnavailable } = require('./cluster');

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;

class Consumer {
  constructor({ url, queue, deadLetterQueue, prefetch, onEnvelope, singleActiveConsumer = false, onFatal = () => {} }) {
    this.singleActiveConsumer = singleActiveConsumer;
    this.onFatal = onFatal;
    this.url = withHeartbeat(url);
    this.queue = queue;
    this.dlq = deadLetterQueue;
    this.prefetch = prefetch;
    this.onEnvelope = onEnvelope;
    this.state = 'starting';
    this.stopping = false;
    this.chain = Promise.resolve();
    this.conn = null;
    this.channel = null;
    this.consumerTag = null;
    this._wake = null;
  }

  start() {
    this.loop = this._loop();
    return this;
  }

  async _loop() {
    let delay = FIRST_DELAY_MS;
    while (!this.stopping) {
      try {
        await this._session(() => { delay = FIRST_DELAY_MS; });
      } catch (err) {
        if (err instanceof QueueMismatch) {
          this.stopping = true;
          this.onFatal(err);
          break;
        }
        log.warn('amqp session failed', { error: err.message });
      }
      if (this.stopping) break;
      this.state = 'reconnecting';
      await this._sleep(delay);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
    this.state = 'stopped';
  }

  async _session(onConsuming) {
    const conn = await amqp.connect(this.url);
    this.conn = conn;
    const closed = new Promise((resolve) => conn.once('close', resolve));
    conn.on('error', (err) => log.warn('amqp connection error', { error: err.message }));
    try {
      const ch = await conn.createConfirmChannel();
      this.channel = ch;
      ch.on('error', (err) => log.warn('amqp channel error', { error: err.message }));
      // A channel the broker closed is a session lost: start again on a new connection.
      ch.on('close', () => {
        ch.gone = true;
        if (!this.stopping) conn.close().catch(() => {});
      });
      if (this.singleActiveConsumer) {
        try {
          await ch.assertQueue(this.queue, { durable: true, arguments: { 'x-single-active-consumer': true } });
        } catch (err) {
          if (err.code === 406) throw new QueueMismatch(this.queue, err.message);
          throw err;
        }
      } else {
        await ch.assertQueue(this.queue, { durable: true });
      }
      await ch.assertQueue(this.dlq, { durable: true });
      await ch.prefetch(this.prefetch);
      const { consumerTag } = await ch.consume(this.queue, (msg) => {
        if (msg === null) { // cancelled by the broker (queue deleted): reconnect and re-declare
          conn.close().catch(() => {});
          return;
        }
        this.chain = this.chain.then(() => this._handle(ch, msg)).catch((err) => {
          log.error('message handling failed', { error: err.message });
        });
      });
      this.consumerTag = consumerTag;
      this.state = 'consuming';
      onConsuming();
      log.info('consuming', { queue: this.queue, singleActiveConsumer: this.singleActiveConsumer });
    } catch (err) {
      conn.close().catch(() => {});
      throw err;
    }
    await closed;
    this.channel = null;
    this.consumerTag = null;
    if (!this.stopping) log.warn('amqp connection closed; reconnecting');
  }

  async _handle(ch, msg) {
    if (ch.gone) return; // its channel closed: the broker redelivers it on the next one
    const { envelope, reason } = contract.parse(msg.content);
    if (reason) {
      await this._deadLetter(ch, msg, reason);
      ch.ack(msg);
      return;
    }
    try {
      await this.onEnvelope(envelope);
    } catch (err) {
      if (err instanceof FanoutUnavailable) {
        // Not the message's fault: keep it. Closing the connection gives it back to the broker.
        log.warn('emit not handed to Redis; the message will be delivered again', { error: err.message });
        ch.gone = true;
        ch.close().catch(() => {});
        return;
      }
      // Valid by the contract but not recordable here: keep it for a person, do not loop on it.
      await this._deadLetter(ch, msg, `processing failed: ${err.message}`);
    }
    ch.ack(msg);
  }

  _deadLetter(ch, msg, reason) {
    // Named by its AMQP message_id and body hash, so a publisher can trace a message to this line (FAULT-2).
    const sha256 = crypto.createHash('sha256').update(msg.content).digest('hex');
    log.warn('dead-lettered', { queue: this.dlq, reason, messageId: msg.properties.messageId, sha256 });
    const headers = { ...(msg.properties.headers || {}), 'x-dlq-reason': reason, 'x-original-queue': this.queue };
    return new Promise((resolve, reject) => {
      ch.sendToQueue(this.dlq, msg.content, {
        persistent: true,
        headers,
        contentType: msg.properties.contentType,
      }, (err) => (err ? reject(err) : resolve()));
    });
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this._wake = () => { clearTimeout(timer); resolve(); };
    });
  }

  /** Stop taking messages, finish the one in hand, close; unacked prefetched messages go back to the queue. */
  async stop() {
    this.stopping = true;
    if (this._wake) this._wake();
    try {
      if (this.channel && this.consumerTag) await this.channel.cancel(this.consumerTag);
    } catch { /* the connection may already be gone */ }
    await this.chain;
    try {
      if (this.conn) await this.conn.close();
    } catch { /* already closed */ }
    await this.loop;
  }
}

/** The queue exists without x-single-active-consumer: instances would compete and break order. */
class QueueMismatch extends Error {
  constructor(queue, detail) {
    super(`queue ${JSON.stringify(queue)} already exists with arguments other than x-single-active-consumer=true `
      + `(${detail}). With REDIS_URL set, several instances consume it; without single active consumer they would `
      + 'take messages in parallel and break per-tenant order. Fix: stop the gateways, delete the queue once it is '
      + `drained (e.g. rabbitmqctl delete_queue ${queue} --if-empty) and let the gateway declare it, or declare it `
      + 'yourself as durable with x-single-active-consumer=true; or leave REDIS_URL empty to run one instance.');
  }
}

function withHeartbeat(url) {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', '10');
  return parsed.toString();
}

module.exports = { Consumer, QueueMismatch };
