"""Dashboard stats and the rule for when a metrics_update is emitted.

The portal refetches stats on every metrics_update, and the seed's stats
endpoint emitted one on every fetch: an endless loop across tabs. Here
GET /api/dashboard/stats emits only when the numbers differ from the last ones
emitted to that tenant (MET-3); POST /api/dashboard/refresh and a new
conversation from the queue always emit (MET-2, MET-4).
"""

from __future__ import annotations

from typing import Any

import socketio

from . import sockets
from .readmodel import ReadModel, Stats, utc_now_iso


def should_emit_stats(last: Stats | None, current: Stats) -> bool:
    """True when ``current`` differs from what the tenant's tabs last got. Patchable seam."""
    return last != current


class MetricsPublisher:
    """Computes a tenant's stats and emits metrics_update, remembering the last numbers sent."""

    def __init__(self, sio: socketio.AsyncServer, readmodel: ReadModel) -> None:
        self._sio = sio
        self._readmodel = readmodel
        self._last: dict[str, Stats] = {}

    async def current(self, tenant: str, *, force: bool) -> dict[str, Any]:
        """The tenant's stats payload; emitted when ``force`` or when the numbers changed."""
        stats = self._readmodel.stats(tenant)
        payload = stats.as_payload(utc_now_iso())
        if force or should_emit_stats(self._last.get(tenant), stats):
            self._last[tenant] = stats  # set before awaiting, so concurrent fetches see it
            await sockets.emit_event(self._sio, tenant, "metrics_update", payload)
        return payload
