"""One self-contained HTML file: a summary (failures first, each linking to its call), then per call the
conversation turn by turn, the checks (why a failed one failed), a timeline picture (SVG) and the
call as sound (caller left, what they heard right).

Words are text, never only hover tooltips, so they print and show in any viewer. Korean needs a
font: the page names a stack of common Korean fonts, and when the machine writing the report has
one (``fonts.find_korean_font``), the glyphs the page uses are embedded, so it reads the same on a
machine with none. The audio is MP3 inside the page (about 2 KB per second of call).
"""

from __future__ import annotations

import base64
import html
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.judge.events import (Clear, Closed, Final, LlmPostcall, LlmRequest, Mark, MarkPlayed, Media, Partial,
                                  RtzrAuthFailed, RtzrEnd, RtzrRefused, SpeechEnd, SpeechStart, Stop, TtsRequest)
from harness.judge.conversation import Turn, turns
from harness.judge.metrics import percentile
from harness.judge.playback import Played, call_audio, played_audio
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import Verdict
from harness.replay.runner import FixtureRun
from harness.files import write_atomically
from harness.reports.fonts import embedded_font_css, missing_font_note
from harness.reports.printout import why

if TYPE_CHECKING:
    from harness.reports.results import Interruption

log = logging.getLogger("harness")

LANES = [
    ("caller speech", "#4c78a8"), ("partials", "#9ecae9"), ("finals", "#2ca02c"), ("RTZR streams", "#d62728"),
    ("LLM", "#ff7f0e"), ("TTS", "#bcbd22"), ("bot audio", "#9467bd"), ("marks / clear", "#8c564b"),
    ("hang-up / close", "#000000"),
]
WIDTH, LANE_H, LEFT = 960, 22, 120
FONT_STACK = ('"Report Korean", "Noto Sans KR", "Noto Sans CJK KR", "Apple SD Gothic Neo", "Malgun Gothic", '
              '"NanumGothic", "Nanum Gothic", "UnDotum", sans-serif')
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120)
e = html.escape


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def tick_step(span: float, most: int = 12) -> float:
    """The smallest round step that labels ``span`` seconds with at most ``most`` ticks."""
    return next((s for s in TICK_STEPS if span / s <= most), TICK_STEPS[-1])


def timeline_svg(run: FixtureRun) -> str:
    timeline: CallTimeline = run.timeline
    if not timeline.events:
        return "<p>(no events)</p>"
    t0 = timeline.events[0].wall
    span = max(1e-3, timeline.events[-1].wall - t0)
    scale = (WIDTH - LEFT - 10) / span
    height = LANE_H * len(LANES) + 34

    def x(wall: float) -> float:
        return LEFT + (wall - t0) * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" '
             f'aria-label="timeline of {e(run.fixture.name)}" font-size="11">']
    for i, (name, color) in enumerate(LANES):
        y = 10 + i * LANE_H
        parts.append(f'<text x="4" y="{y + 14}">{name}</text><line x1="{LEFT}" y1="{y + LANE_H - 2}" x2="{WIDTH - 10}" '
                     f'y2="{y + LANE_H - 2}" stroke="#eee"/>')
    step = tick_step(span)
    axis_y = 10 + len(LANES) * LANE_H
    for k in range(int(span / step) + 1):
        at = LEFT + k * step * scale
        parts.append(f'<line x1="{at:.1f}" y1="10" x2="{at:.1f}" y2="{axis_y + 4}" stroke="#ddd"/>'
                     f'<text x="{at:.1f}" y="{axis_y + 16}" text-anchor="middle">{k * step:g} s</text>')

    def tick(lane: int, wall: float, title: str, height: float = 14) -> None:
        y = 10 + lane * LANE_H + (16 - height)
        parts.append(f'<rect x="{x(wall):.1f}" y="{y}" width="2" height="{height}" fill="{LANES[lane][1]}">'
                     f"<title>{e(title)}</title></rect>")

    def bar(lane: int, start: float, end: float, title: str, label: str = "") -> None:
        y = 12 + lane * LANE_H
        parts.append(f'<rect x="{x(start):.1f}" y="{y}" width="{max(2.0, (end - start) * scale):.1f}" height="14" '
                     f'fill="{LANES[lane][1]}" opacity="0.8"><title>{e(title)}</title></rect>')
        if label:
            parts.append(f'<text x="{x(start) + 3:.1f}" y="{y + 11}" fill="#fff" font-size="10">{e(label)}</text>')

    ends = {ev.utterance: ev.wall for ev in timeline.of(SpeechEnd)}
    hangup = min((ev.wall for ev in timeline.of(Stop, Closed)), default=timeline.events[-1].wall)
    for start in timeline.of(SpeechStart):
        number = start.utterance
        bar(0, start.wall, ends.get(number, hangup), start.text, f"t{number + 1}")
    for partial in timeline.of(Partial):
        tick(1, partial.wall, partial.text, 10)
    for final in timeline.of(Final):
        tick(2, final.wall, final.text)
    for end in timeline.of(RtzrEnd):
        tick(3, end.wall, f"connection {end.connection}: {end.how} {'' if end.code is None else end.code}".rstrip())
    for refused in timeline.of(RtzrRefused):
        tick(3, refused.wall, f"connection {refused.connection}: refused (HTTP {refused.status}) {refused.why}".rstrip())
    for token in timeline.of(RtzrAuthFailed):  # the token endpoint (POST /v1/authenticate) refused
        tick(3, token.wall, f"token refused: /v1/authenticate answered HTTP {token.status}", 16)
    for llm in timeline.of(LlmRequest, LlmPostcall):
        tick(4, llm.wall, ("post-call " if isinstance(llm, LlmPostcall) else "") + f"LLM: {llm.user}"
             + (" (abandoned)" if llm.abandoned else "")
             + (f" HTTP {llm.status}" if llm.status != 200 else ""))
    for tts in timeline.of(TtsRequest):
        tick(5, tts.wall, f"TTS: {tts.text}")
    media, played_marks = timeline.of(Media), timeline.of(MarkPlayed)
    if media:  # a burst of bot audio plays until the last mark the caller side echoed for it
        bursts, burst, prev = [], media[0].wall, media[0].wall
        for message in media[1:]:
            if message.wall - prev > 0.3:
                bursts.append((burst, prev))
                burst = message.wall
            prev = message.wall
        bursts.append((burst, prev))
        for i, (begun, last) in enumerate(bursts):
            until = bursts[i + 1][0] if i + 1 < len(bursts) else float("inf")
            heard = [m.wall for m in played_marks if begun <= m.wall < until]
            bar(6, begun, max([last, *heard]), "bot audio (sent until played)")
    for sent in timeline.of(Mark, Clear):
        tick(7, sent.wall, f"mark {sent.name}" if isinstance(sent, Mark) else "clear", 10 if isinstance(sent, Mark) else 16)
    for gone in timeline.of(Stop, Closed):
        tick(8, gone.wall, f"{gone.kind} {gone.fields()}")
    parts.append("</svg>")
    return "".join(parts)


def _played(run: FixtureRun) -> list[Played]:
    return played_audio(run.record.received, run.pace) if run.record is not None and run.pace else []


def conversation_html(rows: list[Turn], audio_plays: bool) -> str:
    if not rows:
        return "<p class='quiet'>The caller said nothing the script marks as an utterance.</p>"
    body = []
    for t in rows:
        recognised = e(" / ".join(t.recognised)) if t.recognised else "<span class='missing'>(no final)</span>"
        mismatch = " class='differs'" if t.recognised and " ".join(t.recognised) != t.said else ""
        reply = e(t.reply) if t.reply else ("<span class='missing'>(not asked)</span>" if not t.asked else "(empty reply)")
        if not audio_plays:
            heard = "<span class='quiet'>fast pace: not played</span>"
        elif not t.bot_seconds:
            heard = "<span class='missing'>nothing</span>"
        else:
            of = f" of {t.bot_seconds:.1f}" if t.bot_seconds - t.heard_seconds >= 0.05 else ""
            heard = f"{t.heard_seconds:.1f}{of} s" + (" <b>cut short (barge-in)</b>" if t.cut else "")
        said = e(t.said) + ("" if t.finished else " <span class='missing'>(hung up mid-utterance)</span>")
        body.append(f"<tr><td>t{t.number}</td><td>{said}</td><td{mismatch}>"
                    f"{recognised}</td><td>{reply}</td><td>{heard}</td></tr>")
    return ("<table class='talk'><tr><th>turn</th><th>caller said (script)</th><th>recognised (final)</th>"
            "<th>bot replied (LLM)</th><th>caller heard</th></tr>" + "".join(body) + "</table>")


def audio_html(run: FixtureRun, played: list[Played]) -> str:
    if run.record is None or not run.pace or not len(run.record.frame_sent) or not run.timeline.events:
        return "<p class='quiet'>No audio: at fast pace nothing plays in real time.</p>"
    try:
        mp3 = call_audio(run.fixture.script.audio, run.record.frame_sent, played, float(run.record.frame_sent[0]), run.pace)
    except Exception as exc:  # noqa: BLE001 - a report without one call's sound is still a report
        log.warning("no audio for %s: %s", run.fixture.name, exc)
        return f"<p class='quiet'>No audio: {e(str(exc))}</p>"
    data = base64.b64encode(mp3).decode()
    return (f"<p><audio controls preload='none' src='data:audio/mpeg;base64,{data}'></audio> "
            "<span class='quiet'>left: the caller; right: the bot as the caller heard it (clears applied)</span></p>")


def _checks_html(run: FixtureRun) -> str:
    items = []
    for c in run.checks:
        text = f"<li class='{c.status}'><b>{e(c.name)}</b>: {c.status}"
        if c.message:
            text += f"<pre>{e(c.message)}</pre>" if not c.ok else f" <span class='quiet'>- {e(c.message)}</span>"
        stretch = why(run.timeline, c)
        if stretch:
            text += "<pre class='why'>" + e("\n".join(stretch)) + "</pre>"
        items.append(text + "</li>")
    for work in run.post_call:
        late = work.get("answers_final_after_hangup")
        items.append(f"<li class='{'failed' if late else 'postcall'}'><b>post-call work</b> (not a turn): the LLM was "
                     f"asked {work['after_hangup_s']:.2f} s after the hang-up"
                     + (f", answering {e(repr(late))}, a final that came after it" if late else "")
                     + f"<pre>{e(work['asked'][:2000])}</pre></li>")
    if run.errors:
        items.append("<li class='errors'><b>the handler's errors in this call</b><pre>" + e("\n\n".join(run.errors)) + "</pre></li>")
    return "<ul class='checks'>" + "".join(items) + "</ul>"


def _anchor(run: FixtureRun) -> str:
    return "call-" + run.fixture.name


def _order(run: FixtureRun) -> tuple[int, str]:
    """Failed calls first, then those not judged, then the passes."""
    return [Verdict.FAIL, Verdict.NOT_JUDGED, Verdict.PASS].index(run.verdict), run.fixture.name


def _css_class(run: FixtureRun) -> str:
    return {Verdict.PASS: "passed", Verdict.FAIL: "failed", Verdict.NOT_JUDGED: "unjudged"}[run.verdict]


def _not_judged(runs: list[FixtureRun]) -> str:
    n = sum(r.verdict is Verdict.NOT_JUDGED for r in runs)
    return f", {n} not judged (no check could judge them)" if n else ""


def summary_html(runs: list[FixtureRun]) -> str:
    ordered = sorted(runs, key=_order)
    rows = []
    for run in ordered:
        failed = ", ".join(c.name for c in run.checks if not c.ok) or "-"
        names = [c for c in run.checks if c.skipped]
        skipped = (f"{len(names)} ({names[0].message})" if len(names) > 3 and len({c.message for c in names}) == 1
                   else ", ".join(c.name for c in names))
        stt = percentile([t.speech_end_to_final_ms for t in run.turns], 50)
        turn = percentile([t.speech_end_to_first_audio_ms for t in run.turns], 50)
        rows.append(f"<tr class='{_css_class(run)}'><td><a href='#{e(_anchor(run))}'>{e(run.fixture.name)}</a>"
                    f"</td><td>{run.verdict.label}</td><td>{e(failed)}</td><td class='quiet'>{e(skipped)}</td>"
                    f"<td>{len(run.turns)}</td><td>{_ms(stt)}</td><td>{_ms(turn)}</td></tr>")
    return ("<table class='summary'><tr><th>call</th><th>verdict</th><th>failed checks</th><th>skipped</th><th>turns</th>"
            "<th>STT ms (p50)</th><th>turn ms (p50)</th></tr>" + "".join(rows) + "</table>")


def write_html(runs: list[FixtureRun], path: Path, pace: str, interrupted: Interruption | None = None) -> None:
    sections = []
    for run in sorted(runs, key=_order):
        played = _played(run)
        rows = "".join(f"<tr><td>t{t.utterance + 1}</td><td>{_ms(t.speech_end_to_final_ms)}</td>"
                       f"<td>{_ms(t.last_partial_to_final_ms)}</td><td>{_ms(t.final_to_llm_ms)}</td>"
                       f"<td>{_ms(t.speech_end_to_first_audio_ms)}</td></tr>" for t in run.turns)
        sections.append(
            f"<section id='{e(_anchor(run))}' class='{_css_class(run)}'>"
            f"<h2>{e(run.fixture.name)} <span class='verdict'>{run.verdict.label}</span></h2>"
            + (f"<p class='unjudged'>Not judged: no check could judge this call, so it did not pass: "
               f"{e(run.not_judged_why)}</p>" if run.verdict is Verdict.NOT_JUDGED else "") +
            f"<p>{e(run.fixture.script.raw.get('description', ''))} <span class='quiet'>call {e(run.call_sid)}</span></p>"
            f"<h3>Conversation</h3>{conversation_html(turns(run.timeline, run.pace), bool(run.pace))}"
            f"<h3>Checks</h3>{_checks_html(run)}"
            f"<h3>Timeline</h3>{timeline_svg(run)}"
            f"<h3>Listen</h3>{audio_html(run, played)}"
            "<h3>Latency</h3><table><tr><th>turn</th><th>speech end -> final ms</th><th>last partial -> final ms</th>"
            f"<th>final -> LLM ms</th><th>speech end -> first bot audio ms</th></tr>{rows}</table>"
            "<p><a href='#top'>back to the summary</a></p></section>")
    summary = summary_html(runs)
    if interrupted is not None:
        summary = (f"<p class='missing'>This run was {e(interrupted.line)}. Not replayed: "
                   f"{e(', '.join(interrupted.not_run) or 'none')}.</p>{summary}")
    text = "".join(sections) + summary  # what the embedded font must cover
    note = missing_font_note(text)
    if note:
        log.warning("report: %s", note)
        summary = f"<p class='missing'>{e(note)}</p>{summary}"
    page = (
        "<!doctype html><html lang='ko'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>harness report</title><style>"
        f"{embedded_font_css(text)}"
        f"body{{font-family:{FONT_STACK};max-width:1000px;margin:auto;padding:0 8px}}"
        "svg{font-family:inherit;max-width:100%;height:auto}"
        "li.passed{color:#2a7}li.failed{color:#c22}li.postcall{color:#557}li.skipped{color:#888}li.errors{color:#c22}"
        "pre{font-weight:normal;color:#222;background:#f6f6f6;padding:4px;white-space:pre-wrap;font-family:monospace,"
        f"{FONT_STACK}}}"
        "table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;"
        "vertical-align:top}tr.failed td:nth-child(2),section.failed .verdict{color:#c22;font-weight:bold}"
        "section.passed .verdict{color:#2a7}tr.unjudged td:nth-child(2),section.unjudged .verdict,p.unjudged"
        "{color:#c60;font-weight:bold}.quiet{color:#888}.missing{color:#c22}td.differs{background:#fff3cd}"
        "section{border-top:2px solid #ddd;margin-top:24px}h3{margin:14px 0 4px;font-size:15px}"
        "@media print{audio{display:none}}</style></head><body id='top'>"
        f"<h1>harness report</h1><p>{sum(r.ok for r in runs)} of {len(runs)} calls passed{_not_judged(runs)}; pace {e(pace)}; "
        f"written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>{summary}{''.join(sections)}</body></html>")
    write_atomically(path, page)
