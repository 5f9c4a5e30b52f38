'use strict';
// Connection state recovery (RECON-4), with authentication kept in front of it (AUTH-12).
//
// socket.io restores a session while it builds the socket, and writes the missed packets to
// the wire right then, before any middleware has looked at the token. Refusing an expired
// token in a middleware (skipMiddlewares: false) or in the connection handler comes too late:
// the missed events have already been sent. So the check sits in the packet decoder: a
// CONNECT that asks to resume (auth.pid) keeps its pid and offset only if its token verifies
// now and names the tenant the session belonged to. Otherwise they are dropped and the
// CONNECT is an ordinary one, judged by the middleware like any other.
//
// socket.io-client learns its offset from the events it receives, so a tab that has received
// nothing yet reconnects with a pid and no offset, and plain socket.io then does not recover
// at all (socket.io issues #4888, #5538): what was published during the cut is lost. Here the
// decoder gives such a CONNECT the offset SINCE_CONNECT, and ResumableAdapter replays, for it,
// every retained packet of the session's rooms emitted since the socket first connected.
//
// This module is a seam: tests/broken/node/ replaces its exports to break recovery on purpose.

const { EventEmitter } = require('node:events');
const parser = require('socket.io-parser');
const { SessionAwareAdapter } = require('socket.io-adapter');

const SINCE_CONNECT = '@since-connect';

/** socket.io's connectionStateRecovery option. Middlewares run on recovered connections too. */
function recoveryOptions(config) {
  return { maxDisconnectionDuration: config.recoveryWindowMs, skipMiddlewares: false };
}

/** socket.io's in-memory session store, which can also resume a session that never got an offset. */
class ResumableAdapter extends SessionAwareAdapter {
  restoreSession(pid, offset) {
    if (offset !== SINCE_CONNECT) return super.restoreSession(pid, offset);
    const session = this.sessions.get(pid);
    if (!session) return null;
    if (session.disconnectedAt + this.maxDisconnectionDuration < Date.now()) {
      this.sessions.delete(pid);
      return null;
    }
    const since = session.data && session.data.connectedAt;
    if (typeof since !== 'number') return null;
    const missedPackets = this.packets
      .filter((p) => p.emittedAt >= since && includes(session.rooms, p.opts))
      .map((p) => p.data);
    return Promise.resolve({ ...session, missedPackets });
  }
}

// socket.io-adapter's rule for which broadcasts a session's rooms would have received.
function includes(rooms, opts) {
  const included = opts.rooms.size === 0 || rooms.some((room) => opts.rooms.has(room));
  return included && rooms.every((room) => !opts.except.has(room));
}

/** Which tenant each recovery session (pid) belongs to, kept as long as the session may be resumed. */
class SessionOwners {
  constructor(windowMs) {
    this.windowMs = windowMs;
    this.owners = new Map(); // pid -> {tenantId, timer}
  }

  connected(pid, tenantId) {
    if (!pid) return;
    const known = this.owners.get(pid);
    if (known && known.timer) clearTimeout(known.timer);
    this.owners.set(pid, { tenantId, timer: null });
  }

  disconnected(pid) {
    const known = pid && this.owners.get(pid);
    if (!known) return;
    known.timer = setTimeout(() => this.owners.delete(pid), this.windowMs + 1000);
    known.timer.unref();
  }

  tenantOf(pid) {
    const known = this.owners.get(pid);
    return known ? known.tenantId : undefined;
  }
}

/**
 * A socket.io parser whose decoder vets every CONNECT that asks to resume a session: without
 * `mayResume(auth)` its pid and offset are dropped; with it, a missing offset becomes
 * SINCE_CONNECT. Encoding is socket.io-parser's own.
 */
function guardedParser(mayResume) {
  class Decoder extends EventEmitter {
    constructor() {
      super();
      this.inner = new parser.Decoder();
      this.inner.on('decoded', (packet) => this.emit('decoded', guard(packet)));
    }

    add(chunk) {
      this.inner.add(chunk);
    }

    destroy() {
      this.inner.destroy();
    }
  }

  function guard(packet) {
    const auth = packet.data;
    if (packet.type !== parser.PacketType.CONNECT || !auth || typeof auth !== 'object') return packet;
    if (!('pid' in auth) && !('offset' in auth)) return packet;
    const { pid, offset, ...rest } = auth;
    if (typeof pid !== 'string' || !mayResume(auth)) return { ...packet, data: rest };
    return { ...packet, data: { ...rest, pid, offset: typeof offset === 'string' ? offset : SINCE_CONNECT } };
  }

  return { Encoder: parser.Encoder, Decoder, protocol: parser.protocol, PacketType: parser.PacketType };
}

module.exports = { recoveryOptions, guardedParser, ResumableAdapter, SessionOwners, SINCE_CONNECT };
