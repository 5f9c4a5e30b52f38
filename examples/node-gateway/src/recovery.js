'use strict';
// Connection state recovery (RECON-4), with authentication kept in front of it (AUTH-12).
//
// socket.io restores a session while it builds the socket, and writes the missed packets to
// the wire right then, before any middleware has looked at the token. Refusing an expired
// token in a middleware (skipMiddlewares: false) or in the connection handler comes too late:
// the missed events have already been sent. So the check sits in the packet decoder: a
// CONNECT that asks to resume (auth.pid) keeps its pid and offset only if its token verifies
// now; otherwise they are dropped and the CONNECT is an ordinary one, judged by the
// middleware like any other. The token's tenant travels on inside the offset string (the only
// thing socket.io hands the adapter), and the adapter restores a session only if it belonged
// to that tenant. So the check holds wherever the session is kept: in this process, or in
// Redis when another instance created it (cluster.js).
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
const RESUME_PREFIX = '@resume:';

/** The offset handed to the adapter: the client's offset (or SINCE_CONNECT) and the tenant its token names now. */
function resumeOffset(tenantId, offset) {
  return RESUME_PREFIX + JSON.stringify({ tenantId, offset });
}

/** {tenantId, offset} from resumeOffset's string; tenantId is undefined when nothing vetted the resume. */
function readResumeOffset(raw) {
  if (typeof raw !== 'string' || !raw.startsWith(RESUME_PREFIX)) return { tenantId: undefined, offset: raw };
  try {
    const { tenantId, offset } = JSON.parse(raw.slice(RESUME_PREFIX.length));
    return { tenantId: typeof tenantId === 'string' ? tenantId : undefined, offset };
  } catch {
    return { tenantId: undefined, offset: undefined };
  }
}

/** False when the resume was vetted for a tenant and the session belonged to another one. */
function sameTenant(session, tenantId) {
  return tenantId === undefined || (session && session.data && session.data.tenantId === tenantId);
}

/** socket.io's connectionStateRecovery option. Middlewares run on recovered connections too. */
function recoveryOptions(config) {
  return { maxDisconnectionDuration: config.recoveryWindowMs, skipMiddlewares: false };
}

/** socket.io's in-memory session store, which can also resume a session that never got an offset. */
class ResumableAdapter extends SessionAwareAdapter {
  restoreSession(pid, raw) {
    const { tenantId, offset } = readResumeOffset(raw);
    if (!sameTenant(this.sessions.get(pid), tenantId)) return null;
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

/**
 * A socket.io parser whose decoder vets every CONNECT that asks to resume a session: when
 * `mayResume(auth)` is false its pid and offset are dropped; otherwise the offset (SINCE_CONNECT
 * when missing) is wrapped with the tenant `mayResume` returned (see resumeOffset).
 * Encoding is socket.io-parser's own.
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
    const tenantId = typeof pid === 'string' ? mayResume(auth) : false;
    if (!tenantId) return { ...packet, data: rest };
    const from = typeof offset === 'string' ? offset : SINCE_CONNECT;
    return { ...packet, data: { ...rest, pid, offset: resumeOffset(typeof tenantId === 'string' ? tenantId : undefined, from) } };
  }

  return { Encoder: parser.Encoder, Decoder, protocol: parser.protocol, PacketType: parser.PacketType };
}

module.exports = {
  recoveryOptions, guardedParser, ResumableAdapter, SINCE_CONNECT, readResumeOffset, sameTenant,
};
