'use strict';
// Dashboard numbers and when to push them. A portal refetches stats on every metrics_update;
// a GET that always emitted would feed that loop forever (MET-3), so a GET emits only when the
// numbers moved since the last emit to that tenant. Refresh (a person's click) always emits.
// With several instances, "the last emit" is one Redis entry per tenant (cluster.js), swapped
// atomically, or a GET on one instance would repeat what another just emitted.

const NUMBERS = ['activeConversations', 'waitingConversations', 'totalMessagesToday', 'avgResponseTime'];
const MAX_TENANTS_REMEMBERED = 100000;

class Metrics {
  constructor(readModel, emitToTenant, shared = null) {
    this.readModel = readModel;
    this.emitToTenant = emitToTenant;
    this.lastEmitted = new Map(); // tenantId -> numbers key
    this.shared = shared; // cluster.SharedLastStats, or null for one instance
  }

  /** GET stats: the numbers, emitted to the tenant only if they changed since its last emit. */
  async read(tenantId) {
    const stats = this.readModel.stats(tenantId);
    const key = keyOf(stats);
    const last = this.shared ? await this._sharedSwap(tenantId, key) : this.lastEmitted.get(tenantId);
    if (last !== key) await this._emit(tenantId, stats);
    return stats;
  }

  /** POST refresh and a new conversation (MET-4): the numbers, always emitted. */
  async push(tenantId) {
    const stats = this.readModel.stats(tenantId);
    if (this.shared) await this._sharedSwap(tenantId, keyOf(stats));
    await this._emit(tenantId, stats);
    return stats;
  }

  async _sharedSwap(tenantId, key) {
    try {
      return await this.shared.swap(tenantId, key);
    } catch (err) { // Redis unavailable: compare with this instance's memory (one extra emit at worst)
      return this.lastEmitted.get(tenantId);
    }
  }

  _emit(tenantId, stats) {
    this.lastEmitted.delete(tenantId); // re-insert: the map stays in least-recently-emitted order
    this.lastEmitted.set(tenantId, keyOf(stats));
    if (this.lastEmitted.size > MAX_TENANTS_REMEMBERED) {
      this.lastEmitted.delete(this.lastEmitted.keys().next().value);
    }
    return this.emitToTenant(tenantId, 'metrics_update', stats);
  }
}

function keyOf(stats) {
  return JSON.stringify(NUMBERS.map((k) => stats[k]));
}

module.exports = { Metrics };
