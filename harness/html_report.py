"""One self-contained HTML file: per call, a timeline picture (SVG), the checks and the turn metrics."""

from __future__ import annotations

import html
from pathlib import Path

from .printout import why
from .runner import FixtureRun
from .timeline import CallTimeline

LANES = [
    ("caller speech", "#4c78a8"), ("partials", "#9ecae9"), ("finals", "#2ca02c"), ("RTZR streams", "#d62728"),
    ("LLM", "#ff7f0e"), ("TTS", "#bcbd22"), ("bot audio", "#9467bd"), ("marks / clear", "#8c564b"),
    ("hang-up / close", "#000000"),
]
WIDTH, LANE_H, LEFT = 960, 22, 120


def timeline_svg(run: FixtureRun) -> str:
    timeline: CallTimeline = run.timeline
    if not timeline.events:
        return "<p>(no events)</p>"
    t0 = timeline.events[0].wall
    span = max(1e-3, timeline.events[-1].wall - t0)
    scale = (WIDTH - LEFT - 10) / span

    def x(wall: float) -> float:
        return LEFT + (wall - t0) * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{LANE_H * len(LANES) + 30}" '
             f'font-family="sans-serif" font-size="11">']
    for i, (name, color) in enumerate(LANES):
        y = 10 + i * LANE_H
        parts.append(f'<text x="4" y="{y + 14}">{name}</text><line x1="{LEFT}" y1="{y + LANE_H - 2}" x2="{WIDTH - 10}" '
                     f'y2="{y + LANE_H - 2}" stroke="#eee"/>')

    def tick(lane: int, wall: float, title: str, height: float = 14) -> None:
        y = 10 + lane * LANE_H + (16 - height)
        parts.append(f'<rect x="{x(wall):.1f}" y="{y}" width="2" height="{height}" fill="{LANES[lane][1]}">'
                     f"<title>{html.escape(title)}</title></rect>")

    def bar(lane: int, start: float, end: float, title: str) -> None:
        y = 12 + lane * LANE_H
        parts.append(f'<rect x="{x(start):.1f}" y="{y}" width="{max(2.0, (end - start) * scale):.1f}" height="14" '
                     f'fill="{LANES[lane][1]}" opacity="0.8"><title>{html.escape(title)}</title></rect>')

    utterances = {u.end_ms: u for u in run.fixture.script.utterances}
    for e in timeline.of("speech_end"):
        utt = utterances.get(e.detail["audio_ms"])
        length = (utt.end_ms - utt.start_ms) / 1000 if utt else 0.0
        bar(0, e.wall - length, e.wall, e.detail["text"])
    for e in timeline.of("partial"):
        tick(1, e.wall, e.detail["text"], 10)
    for e in timeline.of("final"):
        tick(2, e.wall, e.detail["text"])
    for e in timeline.of("rtzr_end", "rtzr_refused"):
        tick(3, e.wall, f"connection {e.detail.get('connection')}: {e.detail.get('how', 'refused')} {e.detail.get('code', '')}")
    for e in timeline.of("llm_request"):
        tick(4, e.wall, f"LLM: {e.detail['user']}" + (" (abandoned)" if e.detail.get("abandoned") else ""))
    for e in timeline.of("tts_request"):
        tick(5, e.wall, f"TTS: {e.detail['text']}")
    media, played = timeline.of("media"), timeline.of("mark_played")
    if media:  # a burst of bot audio plays until the last mark the caller side echoed for it
        bursts, start, prev = [], media[0].wall, media[0].wall
        for e in media[1:]:
            if e.wall - prev > 0.3:
                bursts.append((start, prev))
                start = e.wall
            prev = e.wall
        bursts.append((start, prev))
        for i, (start, end) in enumerate(bursts):
            until = bursts[i + 1][0] if i + 1 < len(bursts) else float("inf")
            heard = [m.wall for m in played if start <= m.wall < until]
            bar(6, start, max([end, *heard]), "bot audio (sent until played)")
    for e in timeline.of("mark", "clear"):
        tick(7, e.wall, e.kind + " " + e.detail.get("name", ""), 10 if e.kind == "mark" else 16)
    for e in timeline.of("stop", "closed"):
        tick(8, e.wall, f"{e.kind} {e.detail}")
    parts.append(f'<text x="{LEFT}" y="{LANE_H * len(LANES) + 26}">0 s</text>'
                 f'<text x="{WIDTH - 60}" y="{LANE_H * len(LANES) + 26}">{span:.2f} s</text></svg>')
    return "".join(parts)


def write_html(runs: list[FixtureRun], path: Path, pace: str) -> None:
    sections = []
    for run in runs:
        checks = "".join(
            f"<li class='{c.status}'>{html.escape(c.name)}: {c.status}"
            + (f"<pre>{html.escape(c.message)}</pre>" if c.message and not c.ok else f" - {html.escape(c.message)}" if c.message else "")
            + (f"<pre class='why'>{html.escape(chr(10).join(why(run.timeline, c)))}</pre>" if not c.ok and why(run.timeline, c) else "")
            + "</li>" for c in run.checks)
        if run.errors:
            checks += ("<li class='errors'>the handler's errors in this call<pre>"
                       + html.escape("\n\n".join(run.errors)) + "</pre></li>")
        rows = "".join(f"<tr><td>{t.utterance}</td><td>{t.speech_end_to_final_ms}</td><td>{t.last_partial_to_final_ms}</td>"
                       f"<td>{t.final_to_llm_ms}</td><td>{t.speech_end_to_first_audio_ms}</td></tr>" for t in run.turns)
        sections.append(
            f"<section><h2>{html.escape(run.fixture.name)} - {'PASS' if run.ok else 'FAIL'}</h2>"
            f"<p>{html.escape(run.fixture.script.raw.get('description', ''))}</p>{timeline_svg(run)}<ul>{checks}</ul>"
            "<table><tr><th>turn</th><th>speech end -> final ms</th><th>last partial -> final ms</th>"
            f"<th>final -> LLM ms</th><th>speech end -> first bot audio ms</th></tr>{rows}</table></section>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>harness report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:auto}li.passed{color:#2a7}li.failed{color:#c22;font-weight:bold}"
            "li.skipped{color:#888}pre{font-weight:normal;color:#222;background:#f6f6f6;padding:4px;white-space:pre-wrap}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>"
            f"<h1>harness report ({html.escape(pace)})</h1>"
            f"<p>{sum(r.ok for r in runs)} of {len(runs)} fixtures passed.</p>{''.join(sections)}</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
