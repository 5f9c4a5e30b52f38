"""The bench's numbers: percentiles, correctness counted in deliveries from the checker's findings,
the budget rule, ratios, the payload mix, and a bench.json that keeps its promised fields."""

from __future__ import annotations

import json

import jsonschema
import pytest

from realtime_conformance.harness.bench import report, stats
from realtime_conformance.harness.bench.load import mix_cycle
from realtime_conformance.harness.judging.checks import ClientView, Publish, check


def test_nearest_rank_percentiles_are_values_that_happened():
    values = list(range(1, 101))  # 1..100 ms
    summary = stats.latency(values)
    assert summary == {"count": 100, "p50_ms": 50, "p95_ms": 95, "p99_ms": 99, "max_ms": 100}
    assert stats.latency([7.0]) == {"count": 1, "p50_ms": 7.0, "p95_ms": 7.0, "p99_ms": 7.0, "max_ms": 7.0}


def test_nothing_measured_is_none_not_zero():
    assert stats.latency([]) == {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    with pytest.raises(ValueError):
        stats.nearest_rank([], 50)


def _publish(seq: int, tenant: str) -> Publish:
    data = {"messageId": f"m{seq}", "timestamp": f"marker-{seq}"}
    return Publish(seq, tenant, "new_message", data, {"type": "new_message", "tenantId": tenant, "data": data},
                   sent_at=float(seq), marker=f"marker-{seq}")


def test_correctness_counts_deliveries_not_clients():
    pubs = [_publish(n, "a") for n in range(1, 6)] + [_publish(6, "b")]
    got = {n: ("new_message", pubs[n - 1].data, 10.0 + n) for n in range(1, 7)}
    # a1: misses 2 and 3, gets 5 twice, gets b's event 6, and 4 after 5 (one inversion).
    a1 = ClientView("a1", "a", 0.0, None, [got[1], got[5], got[4], got[5], got[6]])
    a2 = ClientView("a2", "a", 0.0, None, [got[n] for n in range(1, 6)])
    b1 = ClientView("b1", "b", 0.0, None, [got[6]])
    counts = stats.correctness(check(pubs, [a1, a2, b1], budget_ms=float("inf")))
    assert counts == {"lost": 2, "duplicated": 1, "cross_tenant": 1, "out_of_order": 1, "altered": 0,
                      "unrecognised": 0}


def test_a_clean_history_has_no_violation_and_latencies_by_type():
    pubs = [_publish(n, "a") for n in range(1, 4)]
    view = ClientView("a1", "a", 0.0, None, [("new_message", p.data, p.sent_at + 0.002) for p in pubs])
    result = check(pubs, [view], budget_ms=float("inf"))
    assert stats.correctness(result) == dict.fromkeys(stats.CORRECTNESS, 0)
    by_type = stats.latency_by_type(result)
    assert by_type["new_message"]["count"] == by_type["all"]["count"] == 3
    assert by_type["all"]["p99_ms"] == pytest.approx(2.0)


@pytest.mark.parametrize("change, meets", [({}, True), ({"p99_ms": 101.0}, False), ({"p99_ms": None}, False),
                                           ({"lost": 1}, False), ({"out_of_order": 2}, False),
                                           ({"connect": {"failed": 3}}, False)])
def test_budget_needs_p99_within_and_nothing_wrong(change, meets):
    step = {"p99_ms": 99.0, **dict.fromkeys(stats.CORRECTNESS, 0), "connect": {"failed": 0}, **change}
    assert stats.meets_budget(step, 100.0) is meets


def test_ratio_and_cpu():
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None and stats.ratio(1.0, 0) is None
    assert stats.cpu_percent(1.5, 1.0) == 150.0


def test_mix_is_interleaved_by_weight():
    cycle = mix_cycle([("new_message", 2), ("status_update", 1)])
    assert sorted(cycle) == ["new_message", "new_message", "status_update"]
    assert mix_cycle([("a", 1)]) == ["a"]
    six = mix_cycle([("n", 6), ("s", 2), ("c", 1), ("m", 1)])
    assert six.count("n") == 6 and "n" * 6 not in "".join(x[0] for x in six)


def _step(target: str, index: int, p99: float, lost: int = 0) -> dict:
    return {"target": target, "step": index, "label": f"{100 * (index + 1)}/10@100", "clients": 100 * (index + 1),
            "tenants": 10, "tabs": 10 * (index + 1), "events_per_s": 100.0, "deliveries": 1000,
            "deliveries_per_s": 1000.0 * (index + 1), "p50_ms": p99 / 3, "p95_ms": p99 / 2, "p99_ms": p99,
            "max_ms": p99 * 2, "latency_by_type": {}, "connect": {"p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0,
                                                                  "per_s": 500.0, "failed": 0},
            "gateway": {"cpu_pct": 50.0 * (index + 1), "rss_mb": 60.0, "rss_mb_max": 61.0},
            "harness": {"cpu_pct": 40.0}, **dict.fromkeys(stats.CORRECTNESS, 0), "lost": lost,
            "workers": [], "publishers": 1, "latency_trusted": True, "clock": None,
            "meets_budget": stats.meets_budget({"p99_ms": p99, "lost": lost}, 100.0)}


def test_bench_json_schema_top_line_and_ratios(tmp_path):
    steps = [_step("ref", 0, 5.0), _step("node", 0, 10.0), _step("ref", 1, 150.0), _step("node", 1, 20.0, lost=2)]
    result = report.assemble({"budget_ms": 100.0, "profile": "test", "step_s": 1, "mix": {"new_message": 1}},
                             [{"name": "ref"}, {"name": "node"}], steps, 100.0, "t0", "t1")
    assert result["best"]["ref"]["label"] == "100/10@100"
    assert result["best"]["node"]["label"] == "100/10@100"  # its second step lost events
    assert result["top_line"].startswith("ref: highest step within budget 100/10@100")
    first = result["comparison"][0]
    assert first["p99_ms"] == {"ref": 5.0, "node": 10.0, "ratio": 2.0}
    assert first["gateway_cpu_pct"]["ratio"] == 1.0
    paths = report.write(result, tmp_path)
    again = json.loads(paths["json"].read_text())
    jsonschema.validate(again, report.SCHEMA)
    page = paths["html"].read_text()
    assert page.count("<svg") == 3  # drawn inside the page: one offline file
    assert "src=" not in page and "<link" not in page
    broken = {**again, "steps": [{k: v for k, v in again["steps"][0].items() if k != "out_of_order"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, report.SCHEMA)


WORKER = {"worker": 0, "clients": 50, "connected": 50, "deliveries": 900, "cpu_pct": 5.0, "rss_mb": 60.0,
          "loop_lag_p99_ms": 2.0, "cpu_us_per_delivery": 80.0, "relay_cpu_pct": 0.2, "clock": None}


def test_bench_2_per_worker_figures_and_untrusted_latencies(tmp_path):
    """Schema bench/2: a step's workers are checked, and untrusted latencies never make the top line."""
    fine = {**_step("ref", 0, 5.0), "workers": [WORKER, {**WORKER, "worker": 1}]}
    untrusted = {**_step("ref", 1, 6.0), "workers": [WORKER], "latency_trusted": False,
                 "clock": {"mode": "measured", "why": "round trip"}}
    untrusted["meets_budget"] = stats.meets_budget(untrusted, 100.0)
    assert untrusted["meets_budget"] is False
    result = report.assemble({"budget_ms": 100.0, "profile": "t", "step_s": 1, "mix": {}}, [{"name": "ref"}],
                             [fine, untrusted], 100.0, "t0", "t1")
    assert result["schema"] == "realtime-conformance/bench/2"
    assert result["best"]["ref"]["label"] == fine["label"]  # the higher step's latencies are not believed
    page = report.render_html(result)
    assert "Per worker" in page and "untrusted (" in page
    no_deliveries = {**fine, "workers": [{k: v for k, v in WORKER.items() if k != "deliveries"}]}
    with pytest.raises(jsonschema.ValidationError):
        report.assemble({"budget_ms": 100.0}, [{"name": "ref"}], [no_deliveries], 100.0, "t0", "t1")
