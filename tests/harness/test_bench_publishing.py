"""Several publisher processes split a step's events by tenant, so each tenant's events leave one
process in publish order (per-tenant order stays judgeable by the history checker)."""

from __future__ import annotations

from realtime_conformance.harness.bench.publishing import split


def test_split_by_tenant_keeps_each_tenants_events_in_one_part_in_order():
    tenant_of = [i % 5 for i in range(20)]  # tenants in turn, as a step plans them
    parts = split(tenant_of, 2)
    assert sorted(i for part in parts for i in part) == list(range(20))
    for part in parts:
        assert part == sorted(part)
        assert len({tenant_of[i] % 2 for i in part}) == 1
    assert split(tenant_of, 1) == [list(range(20))]
    assert len(split([0, 0, 0], 4)) == 1  # no empty publisher
