"""Dashboard stats and the rule for when a metrics_update is emitted.

The portal refetches stats on every metrics_update, and the seed's stats
endpoint emitted one on every fetch: an endless loop across tabs. Here
GET /api/dashboard/stats emits only when the numbers differ from the last ones
emitted to that tenant (MET-3); POST /api/dashboard/refresh and a new
conversation from the queue always emit (MET-2, MET-4).

"Last emitted to that tenant" is per process for one instance; with several
instances (REDIS_URL) it is one Redis entry per tenant that every instance swaps
atomically, or a GET on instance B would re-emit numbers A already emitted.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from . import sockets
from .cluster import RedisLastStats
from .logs import log
from .readmodel import ReadModel, Stats, utc_now_iso


def should_emit_stats(last: Stats | None, current: Stats) -> bool:
    """True when ``current`` differs from what the tenant's tabs last got. Patchable seam."""
    return last != current


class MetricsPublisher:
    """Computes a tenant's stats and emits metrics_update, remembering the last numbers sent."""

    def __init__(self, sio: socketio.AsyncServer, readmodel: ReadModel, shared: RedisLastStats | None = None) -> None:
        self._sio = sio
        self._readmodel = readmodel
        self._last: dict[str, Stats] = {}
        self._shared = shared  # set in cluster mode: the last stats of every instance

    async def current(self, tenant: str, *, force: bool) -> dict[str, Any]:
        """The tenant's stats payload; emitted when ``force`` or when the numbers changed."""
        stats = self._readmodel.stats(tenant)
        payload = stats.as_payload(utc_now_iso())
        # Shared: swapped whatever the decision; with the real rule an unchanged value is a no-op.
        last = self._last.get(tenant) if self._shared is None else await self._shared_swap(tenant, stats)
        if force or should_emit_stats(last, stats):
            self._last[tenant] = stats  # set before awaiting, so concurrent fetches see it
            await sockets.emit_event(self._sio, tenant, "metrics_update", payload)
        return payload

    async def _shared_swap(self, tenant: str, stats: Stats) -> Stats | None:
        """The last stats any instance emitted; this process's own when Redis cannot answer (one extra emit at worst)."""
        assert self._shared is not None
        try:
            return await self._shared.swap(tenant, stats)
        except Exception as exc:  # redis errors and timeouts: a stats GET must still answer
            log("shared last-stats unavailable; comparing with this instance's", level=logging.WARNING,
                error=f"{type(exc).__name__}: {exc}")
            return self._last.get(tenant)
