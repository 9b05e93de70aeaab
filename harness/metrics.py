"""Per-turn latency from the timeline: the true figures, and the one the report measured beside them."""

from __future__ import annotations

from dataclasses import dataclass

from .timeline import CallTimeline


@dataclass(frozen=True)
class TurnMetrics:
    utterance: int
    speech_end_to_final_ms: float | None  # true STT latency: end of caller speech (from the audio) -> final
    last_partial_to_final_ms: float | None  # what the report called "0.001 s"
    final_to_llm_ms: float | None
    speech_end_to_first_audio_ms: float | None  # turn latency as the caller hears it


def turn_metrics(timeline: CallTimeline) -> list[TurnMetrics]:
    finals = timeline.of("final")
    partials = timeline.of("partial")
    requests = timeline.of("llm_request")
    media = timeline.of("media")
    result = []
    for speech in timeline.of("speech_end"):
        text = speech.detail["text"]
        final = next((f for f in finals if f.wall >= speech.wall and set(f.detail["text"].split()) & set(text.split())), None)
        last_partial = None
        if final is not None:
            before = [p for p in partials if p.wall <= final.wall and p.detail["connection"] == final.detail["connection"]]
            last_partial = before[-1] if before else None
        request = next((r for r in requests if final is not None and r.wall >= final.wall), None)
        audio = next((m for m in media if m.wall >= speech.wall), None)

        def ms(a, b):
            return None if a is None or b is None else round((b.wall - a.wall) * 1000, 1)

        result.append(TurnMetrics(speech.detail["utterance"], ms(speech, final), ms(last_partial, final),
                                  ms(final, request), ms(speech, audio)))
    return result


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(v for v in values if v is not None)
    return round(ordered[int(q / 100 * (len(ordered) - 1))], 1) if ordered else None
