'use strict';
// Dashboard numbers and when to push them. A portal refetches stats on every metrics_update;
// a GET that always emitted would feed that loop forever (MET-3), so a GET emits only when the
// numbers moved since the last emit to that tenant. Refresh (a person's click) always emits.

const NUMBERS = ['activeConversations', 'waitingConversations', 'totalMessagesToday', 'avgResponseTime'];
const MAX_TENANTS_REMEMBERED = 100000;

class Metrics {
  constructor(readModel, emitToTenant) {
    this.readModel = readModel;
    this.emitToTenant = emitToTenant;
    this.lastEmitted = new Map(); // tenantId -> numbers key
  }

  /** GET stats: the numbers, emitted to the tenant only if they changed since its last emit. */
  read(tenantId) {
    const stats = this.readModel.stats(tenantId);
    if (this.lastEmitted.get(tenantId) !== keyOf(stats)) this._emit(tenantId, stats);
    return stats;
  }

  /** POST refresh and a new conversation (MET-4): the numbers, always emitted. */
  push(tenantId) {
    const stats = this.readModel.stats(tenantId);
    this._emit(tenantId, stats);
    return stats;
  }

  _emit(tenantId, stats) {
    this.lastEmitted.delete(tenantId); // re-insert: the map stays in least-recently-emitted order
    this.lastEmitted.set(tenantId, keyOf(stats));
    if (this.lastEmitted.size > MAX_TENANTS_REMEMBERED) {
      this.lastEmitted.delete(this.lastEmitted.keys().next().value);
    }
    this.emitToTenant(tenantId, 'metrics_update', stats);
  }
}

function keyOf(stats) {
  return JSON.stringify(NUMBERS.map((k) => stats[k]));
}

module.exports = { Metrics };
