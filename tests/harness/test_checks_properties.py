"""The harness's checks over generated timelines (hypothesis).

A strategy draws the timeline of a call handled *correctly* - utterances, partials and finals,
upstream closes the handler recovers from, one LLM request per final, sentences to TTS, audio and
marks, the caller's hang-up at any point, upstream connections closed after it. Then:

- every check passes on it;
- each handler bug the checks exist for, put into that timeline, fails its check, and the failure
  points at an event of the timeline;
- on arbitrary timelines (any events, any order) the checks never raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from hypothesis import assume, event, given
from hypothesis import strategies as st

from harness.judge.events import (CallStart, Clear, Closed, Event, Final, LlmRequest, Mark, MarkPlayed, Media, Partial,
                                  RtzrClosed, RtzrEnd, RtzrRefused, SpeechEnd, Stop, TtsRequest)
from harness.judge.checks import SETTLE_S, STOP_GRACE_S, CheckContext, run_checks
from harness.judge.timeline import CallTimeline
from ..support.budget import examples


@dataclass
class Call:
    events: list[Event]
    stored: list[str]
    errors: list[str] = field(default_factory=list)
    hangup: float = float("inf")

    def context(self) -> CheckContext:
        return CheckContext(CallTimeline(sorted(self.events, key=lambda e: e.wall)), {}, list(self.stored),
                            list(self.errors))

    def results(self) -> dict[str, object]:
        return {r.name: r for r in run_checks(self.context())}


@st.composite
def good_calls(draw) -> Call:
    """A correct handler's call: see the module docstring."""
    n = draw(st.integers(1, 4))
    gaps = draw(st.lists(st.floats(1.0, 4.0), min_size=n, max_size=n))
    closes_after = draw(st.sets(st.integers(0, n - 1), max_size=2))  # upstream closes after utterance i's final
    hangup_at = draw(st.none() | st.floats(0.5, sum(gaps) + 3.0))
    close_code = draw(st.sampled_from([1000, 1001, 1011]))
    how = draw(st.sampled_from(["server_closed", "dropped", "stalled"]))
    llm_ms = draw(st.floats(0.05, 1.5))

    events: list[Event] = [CallStart(0.0)]
    stored: list[str] = []
    conn, t, request, busy_until = 0, 0.0, 0, 0.0
    history: list[tuple[str, str]] = []
    hangup = hangup_at if hangup_at is not None else float("inf")
    for i in range(n):
        t += gaps[i]
        text = f"말{i} 하나"
        if t >= hangup:
            break
        events.append(SpeechEnd(t, utterance=i, text=text, audio_ms=t * 1000))
        events.append(Partial(t - 0.3, connection=conn, text=f"말{i}", audio_ms=t * 1000 - 300))
        final_at = t + 0.5
        if final_at >= hangup:
            break
        events.append(Final(final_at, connection=conn, text=text, audio_ms=t * 1000))
        stored.append(text)
        ask = max(final_at + 0.01, busy_until)
        if ask < hangup:
            reply = f"응답{request} 첫째. 응답{request} 둘째."
            done = ask + llm_ms
            abandoned = done >= hangup
            told = (*history, ("user", text))  # the conversation so far, as a correct handler tells it
            events.append(LlmRequest(ask, index=request, user=text, reply=reply, abandoned=abandoned, open=False,
                                     told=told))
            history = [*told, ("assistant", reply)]
            for k, sentence in enumerate(reply.split(". ")):
                said_at = ask + llm_ms * (k + 1) / 2
                if said_at >= hangup:
                    break
                sentence = sentence if sentence.endswith(".") else sentence + "."
                events.append(TtsRequest(said_at, index=2 * request + k, text=sentence, abandoned=False, open=False))
                events.append(Media(said_at + 0.05))
                events.append(Mark(said_at + 0.06, name=f"t{request + 1}s{k}"))
            busy_until = done
            request += 1
        if i in closes_after and final_at + 0.1 < hangup:
            events.append(RtzrEnd(final_at + 0.1, connection=conn, how=how, code=close_code, reason="fault"))
            conn += 1
    settle = draw(st.floats(0.05, SETTLE_S * 0.9))  # EOS, last final, close: the upstream winds down
    if hangup_at is not None:
        events.append(Stop(hangup, how="stop"))
        events.append(Closed(hangup + 0.01, by_handler=False))
        in_flight = draw(st.lists(st.floats(0.0, STOP_GRACE_S * 0.9), max_size=3))  # on the wire at the hang-up
        events += [Media(hangup + d) for d in in_flight]
    end = (hangup if hangup_at is not None else t + 1.0) + settle
    events.append(RtzrEnd(end, connection=conn, how="server_closed", code=1000, reason="EOS"))
    return Call(events, stored, hangup=hangup)


@examples(500, nightly=10000)  # CI's 15 minutes: half of what it was
@given(good_calls())
def test_a_correct_handlers_call_passes_every_check(call):
    failed = [f"{r.name}: {r.message}" for r in call.results().values() if not r.ok]
    assert not failed


# Each bug the harness exists to catch, as a change to a correct call's timeline -> the check that must fail.
def send_after_hangup(call: Call, data) -> Call | None:
    if call.hangup == float("inf"):
        return None
    late = call.hangup + STOP_GRACE_S + data.draw(st.floats(0.01, 5.0))
    sent = data.draw(st.sampled_from([Media(late, ms=20.0), Mark(late, name="late"), Clear(late)]))
    return replace(call, events=call.events + [sent])


def final_asked_twice(call: Call, data) -> Call | None:
    requests = [e for e in call.events if isinstance(e, LlmRequest)]
    if not requests:
        return None
    r = data.draw(st.sampled_from(requests))
    again = replace(r, wall=r.wall + data.draw(st.floats(0.01, 3.0)), index=99)
    if again.wall >= call.hangup:
        return None
    return replace(call, events=call.events + [again])


def final_never_asked(call: Call, data) -> Call | None:
    requests = sorted((e for e in call.events if isinstance(e, LlmRequest)), key=lambda e: e.wall)
    if len(requests) < 2:
        return None
    lost = data.draw(st.sampled_from(requests[:-1]))
    events = [replace(lost, user="다른 말") if e is lost else e for e in call.events]
    return replace(call, events=events)


def final_not_stored(call: Call, data) -> Call | None:
    if not call.stored:
        return None
    k = data.draw(st.integers(0, len(call.stored) - 1))
    return replace(call, stored=call.stored[:k] + call.stored[k + 1 :])


def recognition_not_resumed(call: Call, data) -> Call | None:
    """The report's failure 2: after the upstream closes, no stream is opened again."""
    closes = [e for e in call.events if isinstance(e, RtzrEnd) and e.reason == "fault"]
    if not closes:
        return None
    close = data.draw(st.sampled_from(closes))
    if not any(isinstance(e, SpeechEnd) and e.wall > close.wall for e in call.events):
        return None
    return replace(call, events=[e for e in call.events if not (isinstance(e, (Partial, Final)) and e.wall > close.wall)])


def upstream_outlives_call(call: Call, data) -> Call | None:
    if call.hangup == float("inf"):
        return None
    how = data.draw(st.sampled_from(["ends late", "socket left open", "request left open"]))
    if how == "ends late":
        late = RtzrEnd(call.hangup + SETTLE_S + data.draw(st.floats(0.01, 30.0)), connection=7, how="client_closed", code=1000, reason="")
        return replace(call, events=call.events + [late])
    if how == "socket left open":  # a stalled stream never let go of
        judged = RtzrClosed(call.hangup + data.draw(st.floats(0.01, 30.0)), connection=7, open=True)
        return replace(call, events=call.events + [judged])
    requests = [e for e in call.events if isinstance(e, (LlmRequest, TtsRequest))]
    if not requests:
        return None
    left = data.draw(st.sampled_from(requests))
    return replace(call, events=[replace(left, open=True) if e is left else e for e in call.events])


def later_reply_spoken_first(call: Call, data) -> Call | None:
    tts = sorted((e for e in call.events if isinstance(e, TtsRequest)), key=lambda e: e.wall)
    pairs = [(a, b) for a in tts for b in tts if a.wall < b.wall and a.text[:3] != b.text[:3]]
    if not pairs:
        return None
    a, b = data.draw(st.sampled_from(pairs))
    swapped = {id(a): replace(b, wall=a.wall), id(b): replace(a, wall=b.wall)}  # each moment asks the other's words
    return replace(call, events=[swapped.get(id(e), e) for e in call.events])


def error_logged(call: Call, data) -> Call | None:
    return replace(call, errors=[data.draw(st.sampled_from(["call=CA1 event=tts_failed", "unhandled: Task exception"]))])


def history_forgotten(call: Call, data) -> Call | None:
    """The LLM is told only the caller's latest words: the conversation before them is lost."""
    requests = sorted((e for e in call.events if isinstance(e, LlmRequest)), key=lambda e: e.wall)
    if len(requests) < 2:
        return None
    lost = data.draw(st.sampled_from(requests[1:]))
    return replace(call, events=[replace(lost, told=(("user", lost.user),)) if e is lost else e for e in call.events])


BUGS = {
    send_after_hangup: "stops_sending_after_hangup",
    final_asked_twice: "finals_to_llm_once",
    final_never_asked: "finals_to_llm_once",
    final_not_stored: "finals_persisted",
    recognition_not_resumed: "recognition_continues",
    upstream_outlives_call: "upstream_closed_after_hangup",
    later_reply_spoken_first: "replies_in_order",
    error_logged: "no_errors",
    history_forgotten: "llm_told_conversation",
}


@examples(750, nightly=15000)  # CI's 15 minutes: half of what it was
@given(good_calls(), st.sampled_from(list(BUGS)), st.data())
def test_each_bug_put_into_a_correct_call_fails_its_check(call, bug, data):
    broken = bug(call, data)
    assume(broken is not None)
    event(f"bug: {bug.__name__}")
    result = broken.results()[BUGS[bug]]
    assert not result.ok, f"{bug.__name__} went unnoticed by {BUGS[bug]}"
    if result.at is not None:
        assert any(e.wall == result.at for e in broken.events), "a failure points at an event of the timeline"


KINDS = [CallStart, SpeechEnd, Partial, Final, RtzrEnd, RtzrClosed, RtzrRefused, LlmRequest, TtsRequest, Media, Mark,
         MarkPlayed, Clear, Stop, Closed]
TEXTS = st.sampled_from(["", "가", "가 나", "응답0 첫째."])


@st.composite
def any_event(draw) -> Event:
    kind = draw(st.sampled_from(KINDS))
    detail = {"connection": draw(st.integers(0, 3)), "text": draw(TEXTS), "user": draw(TEXTS), "reply": draw(TEXTS),
              "how": draw(st.sampled_from(["server_closed", "dropped", "stalled", "idle_timeout", "client_closed", "stop"])),
              "code": draw(st.sampled_from([None, 1000, 1011])), "reason": draw(st.sampled_from(["", "EOS", "fault"])),
              "open": draw(st.booleans()), "abandoned": draw(st.booleans()), "by_handler": draw(st.booleans()),
              "name": "t1s0", "utterance": 0, "audio_ms": 0.0, "index": 0, "status": 401, "ms": 20.0}
    known = {f.name for f in fields(kind)}
    return kind(draw(st.floats(0, 60, allow_nan=False)), **{k: v for k, v in detail.items() if k in known})


@examples(500, nightly=10000)  # CI's 15 minutes: half of what it was
@given(st.lists(any_event(), max_size=40), st.none() | st.lists(TEXTS, max_size=4),
       st.lists(st.sampled_from(["x", "call=CA1 event=rtzr_auth_failed"]), max_size=2), st.booleans(), st.booleans())
def test_checks_judge_any_timeline_without_raising(events, stored, errors, refused, plays):
    timeline = CallTimeline(sorted(events, key=lambda e: e.wall))
    results = run_checks(CheckContext(timeline, {"finals": ["가"], "llm_turns": 1, "answered_turns": 1,
                                                 "barge_in": True, "call_refused": refused},
                                      stored, errors, refused, plays))
    assert len(results) == len({r.name for r in results})
    for r in results:
        assert r.ok or r.message, f"{r.name} failed without saying why"
        assert r.at is None or any(e.wall == r.at for e in events)
