"""bench.json and bench.html: every step's numbers, the top line, and the two targets as ratios.

bench.json follows ``SCHEMA`` (checked before it is written, so a field the docs promise is never
silently missing). bench.html is one offline file: the tables, and latency-versus-load,
throughput and CPU plots drawn by matplotlib as SVG inside the page.
"""

from __future__ import annotations

import html
import io
import json
import os
import platform
from pathlib import Path
from typing import Any, Mapping, Sequence

import jsonschema

from realtime_conformance.harness.bench.stats import CORRECTNESS, ratio

SCHEMA_ID = "realtime-conformance/bench/2"
_NUM = {"type": ["number", "null"]}
# bench/2: each step says who ran its clients (``workers``, empty when this process did) and
# whether its latencies can be believed (``latency_trusted``, ``clock``).
WORKER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["worker", "clients", "connected", "deliveries", "cpu_pct", "rss_mb", "loop_lag_p99_ms",
                 "cpu_us_per_delivery", "clock"],
    "properties": {"worker": {"type": "integer", "minimum": 0}, "clients": {"type": "integer", "minimum": 1},
                   "connected": {"type": "integer", "minimum": 0}, "deliveries": {"type": "integer", "minimum": 0},
                   "cpu_pct": _NUM, "rss_mb": _NUM, "loop_lag_p99_ms": _NUM, "cpu_us_per_delivery": _NUM,
                   "clock": {"type": ["object", "null"]}},
}
STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["target", "step", "label", "clients", "tenants", "tabs", "events_per_s", "deliveries",
                 "deliveries_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "latency_by_type", "connect",
                 "gateway", "harness", "meets_budget", "workers", "publishers", "latency_trusted", "clock",
                 *CORRECTNESS],
    "properties": {
        "target": {"type": "string"}, "step": {"type": "integer"}, "label": {"type": "string"},
        "clients": {"type": "integer", "minimum": 1}, "tenants": {"type": "integer", "minimum": 1},
        "tabs": {"type": "integer", "minimum": 1}, "events_per_s": {"type": "number"},
        "deliveries": {"type": "integer"}, "deliveries_per_s": _NUM,
        "p50_ms": _NUM, "p95_ms": _NUM, "p99_ms": _NUM, "max_ms": _NUM,
        "latency_by_type": {"type": "object"},
        "connect": {"type": "object", "required": ["p50_ms", "p99_ms", "max_ms", "per_s", "failed"]},
        "gateway": {"type": ["object", "null"]},
        "harness": {"type": "object"},
        "meets_budget": {"type": "boolean"},
        "workers": {"type": "array", "items": WORKER_SCHEMA},
        "publishers": {"type": "integer", "minimum": 1},
        "latency_trusted": {"type": "boolean"},
        "clock": {"type": ["object", "null"]},
        **{k: {"type": "integer", "minimum": 0} for k in CORRECTNESS},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "top_line", "config", "machine", "targets", "steps", "best", "comparison"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "top_line": {"type": "string"},
        "targets": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name"]}},
        "steps": {"type": "array", "items": STEP_SCHEMA},
        "best": {"type": "object"},
        "comparison": {"type": "array"},
    },
}
RATIO_FIELDS = ("p50_ms", "p99_ms", "max_ms", "deliveries_per_s")


def machine() -> dict[str, Any]:
    """Where the numbers were taken: they mean little without the machine and how busy it was."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def best_steps(steps: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    """Per target, the highest step that met the budget: most deliveries asked per second, then clients."""
    out: dict[str, Any] = {}
    for name in targets:
        good = [s for s in steps if s["target"] == name and s["meets_budget"]]
        top = max(good, key=lambda s: (s["events_per_s"] * s["tabs"], s["clients"]), default=None)
        out[name] = None if top is None else {k: top[k] for k in ("label", "clients", "events_per_s", "p99_ms",
                                                                  "deliveries_per_s")}
    return out


def comparison(steps: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> list[dict[str, Any]]:
    """For every step both targets ran: each figure of the second over the first's (lower is better
    for latency and CPU, higher for deliveries/s)."""
    if len(targets) < 2:
        return []
    base, other = targets[0], targets[1]
    rows = []
    for index in sorted({s["step"] for s in steps}):
        a = next((s for s in steps if s["step"] == index and s["target"] == base), None)
        b = next((s for s in steps if s["step"] == index and s["target"] == other), None)
        if a is None or b is None:
            continue
        row: dict[str, Any] = {"step": index, "label": a["label"], "baseline": base, "other": other}
        for key in RATIO_FIELDS:
            row[key] = {base: a[key], other: b[key], "ratio": ratio(b[key], a[key])}
        cpu_a, cpu_b = (a.get("gateway") or {}).get("cpu_pct"), (b.get("gateway") or {}).get("cpu_pct")
        row["gateway_cpu_pct"] = {base: cpu_a, other: cpu_b, "ratio": ratio(cpu_b, cpu_a)}
        rss_a, rss_b = (a.get("gateway") or {}).get("rss_mb_max"), (b.get("gateway") or {}).get("rss_mb_max")
        row["gateway_rss_mb_max"] = {base: rss_a, other: rss_b, "ratio": ratio(rss_b, rss_a)}
        rows.append(row)
    return rows


def top_line(best: Mapping[str, Any], budget_ms: float) -> str:
    parts = []
    for name, top in best.items():
        if top is None:
            parts.append(f"{name}: no step met the budget (p99 <= {budget_ms:g} ms, nothing lost, duplicated, "
                         "leaked or out of order)")
        else:
            parts.append(f"{name}: highest step within budget {top['label']} ({top['clients']} clients, "
                         f"{top['events_per_s']:g} events/s, p99 {top['p99_ms']:.1f} ms)")
    return "; ".join(parts)


def assemble(config: Mapping[str, Any], targets: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]],
             budget_ms: float, started_at: str, finished_at: str) -> dict[str, Any]:
    names = [t["name"] for t in targets]
    best = best_steps(steps, names)
    result = {"schema": SCHEMA_ID, "top_line": top_line(best, budget_ms), "started_at": started_at,
              "finished_at": finished_at, "config": dict(config), "machine": machine(), "targets": list(targets),
              "steps": list(steps), "best": best, "comparison": comparison(steps, names)}
    jsonschema.validate(result, SCHEMA)
    return result


# ----------------------------------------------------------------------------------------- html

def _plots(result: Mapping[str, Any]) -> dict[str, str]:
    """SVG figures (latency vs load, throughput, gateway CPU), one per key."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = result["steps"]
    names = [t["name"] for t in result["targets"]]
    indices = sorted({s["step"] for s in steps})
    labels = [next(s["label"] for s in steps if s["step"] == i) for i in indices]
    budget = result["config"].get("budget_ms")
    figures: dict[str, str] = {}

    def series(name: str, key: str, inner: str | None = None) -> list[float | None]:
        out = []
        for i in indices:
            s = next((s for s in steps if s["step"] == i and s["target"] == name), None)
            value = None if s is None else (s.get(key) if inner is None else (s.get(key) or {}).get(inner))
            out.append(float("nan") if value is None else value)
        return out

    def finish(fig: Any, ax: Any, ylabel: str, key: str) -> None:
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("step (clients/tenants@events per s)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        plt.close(fig)
        svg = buffer.getvalue()
        figures[key] = svg[svg.index("<svg"):]

    fig, ax = plt.subplots(figsize=(8, 4))
    for name in names:
        ax.plot(range(len(indices)), series(name, "p50_ms"), marker="o", label=f"{name} p50")
        ax.plot(range(len(indices)), series(name, "p99_ms"), marker="s", linestyle="--", label=f"{name} p99")
    if budget:
        ax.axhline(budget, color="red", linewidth=1, label=f"budget {budget:g} ms")
    ax.set_yscale("log")
    ax.set_title("Publish-to-receive latency by load")
    finish(fig, ax, "ms (log)", "latency")

    fig, ax = plt.subplots(figsize=(8, 4))
    offered = []
    for i in indices:
        s = next(s for s in steps if s["step"] == i)
        offered.append(s["events_per_s"] * s["tabs"])
    ax.plot(range(len(indices)), offered, color="grey", linestyle=":", label="asked (events/s x tabs)")
    for name in names:
        ax.plot(range(len(indices)), series(name, "deliveries_per_s"), marker="o", label=f"{name} delivered")
    ax.set_title("Deliveries per second")
    finish(fig, ax, "deliveries/s", "throughput")

    fig, ax = plt.subplots(figsize=(8, 4))
    for name in names:
        ax.plot(range(len(indices)), series(name, "gateway", "cpu_pct"), marker="o", label=f"{name} gateway")
        ax.plot(range(len(indices)), series(name, "harness", "cpu_pct"), marker="x", linestyle=":",
                label=f"harness (against {name})")
    ax.set_title("CPU (100 % = one core)")
    finish(fig, ax, "% of one core", "cpu")
    return figures


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return html.escape(str(value))


def render_html(result: Mapping[str, Any]) -> str:
    figures = _plots(result)
    esc = html.escape
    columns = [("target", "target"), ("label", "step"), ("clients", "clients"), ("events_per_s", "events/s"),
               ("deliveries_per_s", "deliveries/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
               ("p99_ms", "p99 ms"), ("max_ms", "max ms"), *((k, k.replace("_", " ")) for k in CORRECTNESS),
               ("meets_budget", "within budget")]
    rows = []
    latency_keys = {"p50_ms", "p95_ms", "p99_ms", "max_ms"}
    for s in result["steps"]:
        untrusted = s.get("latency_trusted") is False
        cells = [f"untrusted ({_fmt(s.get(k))})" if untrusted and k in latency_keys else _fmt(s.get(k))
                 for k, _ in columns]
        gw, hv, conn = s.get("gateway") or {}, s.get("harness") or {}, s.get("connect") or {}
        cells += [_fmt(gw.get("cpu_pct")), _fmt(gw.get("rss_mb_max")), _fmt(hv.get("cpu_pct")),
                  _fmt(hv.get("memory_per_client_kb")), _fmt(hv.get("loop_lag_p99_ms")), _fmt(conn.get("p99_ms")),
                  _fmt(conn.get("per_s")), _fmt(conn.get("failed"))]
        cls = "ok" if s.get("meets_budget") else "over"
        rows.append(f"<tr class='{cls}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    heads = [h for _, h in columns] + ["gateway CPU %", "gateway RSS MB", "harness CPU %", "harness KB/client",
                                       "harness loop lag p99 ms", "connect p99 ms", "connects/s", "connect failed"]
    compare_rows = []
    for row in result["comparison"]:
        base, other = row["baseline"], row["other"]
        cells = [esc(row["label"])]
        for key in (*RATIO_FIELDS, "gateway_cpu_pct", "gateway_rss_mb_max"):
            v = row[key]
            cells.append(f"{_fmt(v[base])} / {_fmt(v[other])} (×{_fmt(v['ratio'])})")
        compare_rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    worker_rows = []
    for s in result["steps"]:
        for w in s.get("workers") or []:
            c = w.get("clock") or {}
            cells = [esc(s["target"]), esc(s["label"]), str(w["worker"]), _fmt(w["clients"]), _fmt(w["connected"]),
                     _fmt(w["deliveries"]), _fmt(w["cpu_pct"]), _fmt(w.get("cpu_us_per_delivery")), _fmt(w["rss_mb"]),
                     _fmt(w.get("memory_per_client_kb")), _fmt(w["loop_lag_p99_ms"]), _fmt(w.get("relay_cpu_pct")),
                     _fmt(c.get("correction_ms")), _fmt(c.get("drift_ms")), _fmt(c.get("rtt_ms"))]
            worker_rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    workers = ""
    if worker_rows:
        workers = ("<h2>Per worker</h2><p>Each worker's clean child (the clients) and its Locust relay. Clock columns "
                   "only when measured (--bench-clock measured, or workers that joined): the correction added to its "
                   "stamps, the drift between before and after, the larger round trip; a step is untrusted when "
                   "drift or round trip is not under 10 % of its p50.</p><table><tr>"
                   + "".join(f"<th>{h}</th>" for h in ("target", "step", "worker", "clients", "connected",
                                                        "deliveries", "CPU %", "us/delivery", "RSS MB", "KB/client",
                                                        "loop lag p99 ms", "relay CPU %", "correction ms",
                                                        "drift ms", "round trip ms"))
                   + "</tr>" + "".join(worker_rows) + "</table>")
    comparison = ""
    if compare_rows:
        first = result["comparison"][0]
        comparison = (f"<h2>{esc(first['other'])} against {esc(first['baseline'])}</h2>"
                      f"<p>Each cell: {esc(first['baseline'])} / {esc(first['other'])} (× ratio of the second to the "
                      "first). Steps alternate between the two on the same broker and machine.</p><table><tr>"
                      + "".join(f"<th>{h}</th>" for h in ("step", *RATIO_FIELDS, "gateway CPU %", "gateway RSS MB"))
                      + "</tr>" + "".join(compare_rows) + "</table>")
    targets = "".join(f"<li><b>{esc(t['name'])}</b>: {esc(json.dumps({k: v for k, v in t.items() if k != 'name'}))}"
                      "</li>" for t in result["targets"])
    m = result["machine"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>realtime-conformance bench</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f3f3f3; }} tr.over td {{ background: #fff1f0; }} tr.ok td {{ background: #f3fff3; }}
.top {{ font-size: 1.1em; padding: 0.6em; background: #eef4ff; border-left: 4px solid #36c; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }}
</style></head><body>
<h1>Bench</h1>
<p class="top">{esc(result['top_line'])}</p>
<p>Budget: p99 within {_fmt(result['config'].get('budget_ms'))} ms with no correctness violation. Profile
{esc(str(result['config'].get('profile')))}, {esc(str(result['config'].get('step_s')))} s per step, mix
{esc(json.dumps(result['config'].get('mix')))}. Started {esc(result['started_at'])}, finished
{esc(result['finished_at'])}. Machine: {m['cpus']} CPUs, load average {esc(str(m['load_avg']))},
{esc(m['platform'])}.</p>
<ul>{targets}</ul>
<figure>{figures['latency']}</figure><figure>{figures['throughput']}</figure><figure>{figures['cpu']}</figure>
{comparison}
<h2>Every step</h2>
<table><tr>{''.join(f'<th>{h}</th>' for h in heads)}</tr>{''.join(rows)}</table>
{workers}
<p>Field meanings: docs/bench.md. Numbers, not verdicts: this machine is shared and noisy.</p>
</body></html>
"""


def write(result: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """Write bench.json and bench.html into ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "bench.json", folder / "bench.html"
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(result), encoding="utf-8")
    return {"json": json_path, "html": html_path}
