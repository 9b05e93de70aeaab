"""A load run's results: a table for the console, JSON, and an HTML page that plots turn latency and the
answered share against concurrency (inline SVG: no script, no network)."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import IO

from harness.load.capacity import LoadResult
from harness.load.stats import StepResult
from harness.files import write_atomically

COLUMNS = ("callers", "calls", "failed", "answered", "p50 ms", "p95 ms", "p99 ms", "handler p99", "handler CPU",
           "harness CPU", "harness late p99", "verdict")


def _row(step: StepResult, label: str = "") -> list[str]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:g} %"

    verdict = "" if step.held is None else ("held" if step.held else f"broke: {step.why_not}")
    return [f"{step.callers}{label}", str(step.calls_started), str(step.calls_failed), f"{step.answered}/{step.turns}",
            ms(step.latency_ms.get("p50")), ms(step.latency_ms.get("p95")), ms(step.latency_ms.get("p99")),
            ms(step.handler_ms.get("p99")), pct(step.handler_cpu_percent), pct(step.harness_cpu_percent),
            ms(step.harness_late_ms.get("p99")), verdict]


def rows(result: LoadResult) -> list[list[str]]:
    out = [_row(result.baseline, " (baseline)")] if result.baseline else []
    return out + [_row(s) for s in sorted(result.steps, key=lambda s: s.callers)]


def console_table(result: LoadResult, out: IO[str]) -> None:
    table = [list(COLUMNS), *rows(result)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS) - 1)]
    for i, row in enumerate(table):
        out.write("  ".join(c.rjust(w) for c, w in zip(row, widths)) + "  " + row[-1] + "\n")
        if i == 0:
            out.write("-" * (sum(widths) + 2 * len(widths) + 7) + "\n")
    out.write(summary(result) + "\n")
    if result.resources is not None and result.resources.samples:
        out.write(result.resources.describe() + "\n")


def summary(result: LoadResult) -> str:
    k = result.knee
    if result.plan.criteria is None:
        return f"{len(result.steps)} step(s) measured"
    if not result.plan.search:
        held = [str(s.callers) for s in result.steps if s.held]
        broke = [f"{s.callers} ({s.why_not})" for s in result.steps if not s.held]
        return "; ".join(([f"held at {', '.join(held)} callers"] if held else [])
                         + ([f"broke at {', '.join(broke)}"] if broke else []))
    if k["broke"] is None:
        return f"capacity: every step held, up to {k['held']} concurrent callers (no knee found below the limit)"
    if k["held"] is None:
        return f"capacity: the first step ({k['broke']} callers) already broke: {k['why']}"
    return f"capacity: {k['held']} concurrent callers held; {k['broke']} broke ({k['why']})"


def as_json(result: LoadResult) -> dict:
    plan = asdict(result.plan)
    return {"target": result.target, "fixtures": result.fixtures, "plan": plan, "cpu_seen": result.cpu_seen,
            **({"handler_resources": result.resources.as_json()} if result.resources else {}),
            "baseline": result.baseline.as_json() if result.baseline else None,
            "steps": [s.as_json() for s in result.steps], "knee": result.knee if result.plan.criteria else None}


def write_json(result: LoadResult, path: Path) -> None:
    write_atomically(path, json.dumps(as_json(result), ensure_ascii=False, indent=2) + "\n")


def _chart(title: str, steps: list[StepResult], series: dict[str, list[float | None]], unit: str,
           limit: float | None = None, y_max: float | None = None) -> str:
    """One line chart (x: callers) as SVG."""
    w, h, left, bottom, top, right = 560, 260, 60, 40, 30, 20
    xs = [s.callers for s in steps]
    values = [v for vs in series.values() for v in vs if v is not None] + ([limit] if limit else [])
    if not xs or not values:
        return f"<p>{html.escape(title)}: nothing measured</p>"
    x_hi = max(xs) or 1
    y_hi = y_max or max(values) * 1.1 or 1

    def px(x: float) -> float:
        return left + (w - left - right) * x / x_hi

    def py(y: float) -> float:
        return h - bottom - (h - top - bottom) * y / y_hi

    parts = [f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="18" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{py(0)}" x2="{w - right}" y2="{py(0)}" stroke="#444"/>',
             f'<line x1="{left}" y1="{py(0)}" x2="{left}" y2="{top}" stroke="#444"/>',
             f'<text x="{(w + left) / 2}" y="{h - 6}" text-anchor="middle">concurrent callers</text>']
    for i in range(5):
        y = y_hi * i / 4
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.3g}{unit}</text>')
    for x in sorted(set(xs)):
        parts.append(f'<text x="{px(x):.1f}" y="{h - bottom + 15}" text-anchor="middle" font-size="11">{x}</text>')
    if limit:
        parts.append(f'<line x1="{left}" y1="{py(limit):.1f}" x2="{w - right}" y2="{py(limit):.1f}" stroke="#c00" '
                     f'stroke-dasharray="4 3"/><text x="{w - right}" y="{py(limit) - 4:.1f}" text-anchor="end" '
                     f'fill="#c00" font-size="11">limit {limit:g}{unit}</text>')
    colours = ("#1f6fb4", "#e08a00", "#6a3d9a", "#2a9d3a")
    for (name, vs), colour in zip(series.items(), colours):
        points = sorted((x, v) for x, v in zip(xs, vs) if v is not None)
        if not points:
            continue
        path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}"><title>{x} callers: '
                     f'{v:g}{unit}</title></circle>' for x, v in points)
    legend_x = w - right - sum(12 + 8 * len(name) for name in series)
    for (name, _), colour in zip(series.items(), colours):
        parts.append(f'<text x="{legend_x}" y="18" fill="{colour}" font-size="12">{html.escape(name)}</text>')
        legend_x += 12 + 8 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def write_html(result: LoadResult, path: Path) -> None:
    steps = sorted(([result.baseline] if result.baseline else []) + result.steps, key=lambda s: s.callers)
    criteria = result.plan.criteria
    latency = _chart("turn latency (caller's speech end -> first bot audio)", steps,
                     {"p50": [s.latency_ms.get("p50") for s in steps], "p95": [s.latency_ms.get("p95") for s in steps],
                      "p99": [s.latency_ms.get("p99") for s in steps]}, " ms",
                     limit=criteria.max_p95_ms if criteria else None)
    answered = _chart("turns answered", steps, {"answered": [
        None if s.answered_share is None else round(100 * s.answered_share, 1) for s in steps]}, " %",
        limit=100 * criteria.min_answered if criteria else None, y_max=105)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows(result))
    failures = sorted({f for s in steps for f in s.failures})
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>harness load</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:3px 8px;text-align:right}}svg{{margin:1em 1em 0 0;font-family:sans-serif}}</style></head><body>
<h1>harness load</h1>
<p>{html.escape(result.target)}; fixtures: {html.escape(', '.join(result.fixtures))}; each step held
{result.plan.hold_s:g} s after its callers joined. <b>{html.escape(summary(result))}</b></p>
<div>{latency}{answered}</div>
<table><tr>{head}</tr>{body}</table>
<p>handler CPU: {html.escape(result.cpu_seen or 'not visible (a handler the harness did not start)')}; percent of one core.
The harness CPU is this process's (callers and fakes): near 100 % the knee may be the harness's, not the handler's.
"harness late" is how late this process's event loop ran a timer due every 10 ms: every latency above includes up to
that much of the harness's own delay.</p>
{'<h2>failed calls (first few)</h2><ul>' + ''.join(f'<li>{html.escape(f)}</li>' for f in failures) + '</ul>' if failures else ''}
</body></html>
"""
    write_atomically(path, page)
