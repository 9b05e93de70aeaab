"""The turn-taking core as a state machine (hypothesis stateful testing).

Random interleavings of caller finals and partials, LLM tokens, completions and failures, late
tokens of cancelled turns, mark echoes (known, repeated and unknown) and the hang-up are fed to
``TurnTaker``; after every step its actions are checked against a model of what a correct call
handler may do. Thousands of interleavings per run (see tests/support/budget.py).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from aicall.turns import (FALLBACK_REPLY, AskLlm, CallerFinal, CallerPartial, CancelLlm, HangUp, LlmDone, LlmFailed,
                          LlmText, Persist, Played, Speak, StopSpeaking, TurnTaker)

from ..support.budget import examples

FINALS = st.sampled_from(["가", "나다", "라 마", "바사.", "", "  ", "아자 차카 타파"])
PARTIALS = st.sampled_from(["", " ", "어", "음 잠깐"])
CHUNKS = st.sampled_from(["안녕. ", "하세요", "? ", "네\n", "", "길게 이어지는 문장", "!", " 끝."])


def squash(text: str) -> str:
    return "".join(text.split())


class TurnMachine(RuleBasedStateMachine):
    @initialize(barge_in=st.booleans())
    def start(self, barge_in: bool) -> None:
        self.t = TurnTaker("sys", barge_in=barge_in)
        self.barge_in = barge_in
        self.finals: list[str] = []  # non-empty caller finals, stripped
        self.caller_persisted: list[str] = []
        self.asked: list[str] = []  # user content of each AskLlm
        self.unanswered: list[str] = []  # finals persisted as not answered at hang-up
        self.generating: int | None = None  # turn whose LLM request is outstanding
        self.closed_turns: set[int] = set()  # done, failed or cancelled
        self.stopped_turns: set[int] = set()  # playback stopped: no more Speak for them
        self.tokens: dict[int, str] = {}  # turn -> text the LLM produced
        self.spoken: dict[int, list[Speak]] = {}
        self.unplayed: list[str] = []  # marks sent, not echoed, not cleared
        self.heard: dict[int, list[str]] = {}
        self.ended = False

    # ------------------------------------------------------------- apply
    def apply(self, event) -> list:
        actions = self.t.handle(event)
        if self.ended:
            assert actions == [], f"{event} after the hang-up produced {actions}"
            return actions
        for a in actions:
            if isinstance(a, AskLlm):
                assert self.generating is None, f"turn {a.turn} asked while turn {self.generating} is outstanding"
                assert a.turn == len(self.asked) + 1, "turns are numbered 1, 2, 3, ..."
                assert a.messages[0]["role"] == "system" and a.messages[-1]["role"] == "user"
                self.asked.append(a.messages[-1]["content"])
                self.generating = a.turn
                self.check_history(a.messages)
            elif isinstance(a, CancelLlm):
                assert a.turn == self.generating, f"cancelled turn {a.turn}, generating {self.generating}"
                self.closed_turns.add(a.turn)
                self.generating = None
            elif isinstance(a, Speak):
                assert a.turn not in self.stopped_turns, f"spoke {a.text!r} of turn {a.turn} after its playback stopped"
                said = self.spoken.setdefault(a.turn, [])
                assert a.index == len(said) and a.mark == f"t{a.turn}s{a.index}"
                assert a.text.strip(), "no empty sentence goes to TTS"
                said.append(a)
                self.unplayed.append(a.mark)
            elif isinstance(a, StopSpeaking):
                self.stopped_turns.update(a.turns)
                self.unplayed.clear()
            elif isinstance(a, Persist) and a.role == "caller":
                self.caller_persisted.append(a.text)
            elif isinstance(a, Persist) and a.role == "event" and a.text.startswith("not answered (call ended): "):
                self.unanswered.append(a.text.removeprefix("not answered (call ended): "))
        return actions

    def check_history(self, messages: tuple[dict[str, str], ...]) -> None:
        """What the LLM is told the bot said, turn by turn, is what the caller heard of a reply
        whose playback was cut short, else the whole reply."""
        def said(turn: int) -> str:
            if turn in self.stopped_turns:
                return squash(" ".join(self.heard.get(turn, [])))
            return squash(self.tokens.get(turn, ""))

        turns = iter(sorted(self.tokens))
        for m in messages:
            if m["role"] != "assistant" or m["content"] in ("", FALLBACK_REPLY):
                continue
            assert any(said(turn) == squash(m["content"]) for turn in turns), \
                f"history says the bot said {m['content']!r}; replies: {[said(t) for t in sorted(self.tokens)]}"

    # ------------------------------------------------------------- rules
    @rule(text=FINALS)
    def caller_final(self, text: str) -> None:
        if not self.ended and text.strip():
            self.finals.append(text.strip())
        self.apply(CallerFinal(text))

    @rule(text=PARTIALS)
    def caller_partial(self, text: str) -> None:
        speaking = bool(self.unplayed)
        actions = self.apply(CallerPartial(text))
        stops = [a for a in actions if isinstance(a, StopSpeaking)]
        if not self.ended:
            should = self.barge_in and speaking and bool(text.strip())
            assert bool(stops) == should, f"barge-in={self.barge_in}, speaking={speaking}, partial={text!r}: {actions}"

    @precondition(lambda self: self.generating is not None)
    @rule(chunk=CHUNKS)
    def llm_text(self, chunk: str) -> None:
        turn = self.generating
        self.tokens[turn] = self.tokens.get(turn, "") + chunk
        self.apply(LlmText(turn, chunk))

    @precondition(lambda self: self.generating is not None)
    @rule()
    def llm_done(self) -> None:
        turn = self.generating
        self.generating = None
        self.closed_turns.add(turn)
        self.apply(LlmDone(turn))
        if turn not in self.stopped_turns:
            said = "".join(s.text for s in self.spoken.get(turn, []))
            assert squash(said) == squash(self.tokens.get(turn, "")), "every word of a reply is spoken, once, in order"

    @precondition(lambda self: self.generating is not None)
    @rule()
    def llm_failed(self) -> None:
        turn = self.generating
        self.generating = None
        self.closed_turns.add(turn)
        self.tokens.pop(turn, None)
        actions = self.apply(LlmFailed(turn, "HTTP 500"))
        if not self.ended:
            assert any(isinstance(a, Speak) and a.text == FALLBACK_REPLY for a in actions), "a failed turn speaks the fallback"

    @precondition(lambda self: self.closed_turns)
    @rule(chunk=CHUNKS, done=st.booleans(), data=st.data())
    def late_llm_event(self, chunk: str, done: bool, data) -> None:
        turn = data.draw(st.sampled_from(sorted(self.closed_turns)))
        event = LlmDone(turn) if done else LlmText(turn, chunk)
        assert self.t.handle(event) == [], f"{event} of a closed turn was acted on"

    @precondition(lambda self: self.unplayed)
    @rule(data=st.data())
    def mark_echoed(self, data) -> None:
        mark = data.draw(st.sampled_from(self.unplayed))
        self.unplayed.remove(mark)
        turn, index = (int(x) for x in mark[1:].split("s"))
        self.heard.setdefault(turn, []).append(self.spoken[turn][index].text)
        assert self.apply(Played(mark)) == []

    @rule(mark=st.sampled_from(["t9s9", "x", "t1s0"]))
    def stray_mark(self, mark: str) -> None:
        if mark in self.unplayed:
            return
        assert self.t.handle(Played(mark)) == []

    @rule()
    def hang_up(self) -> None:
        if self.ended:
            assert self.t.handle(HangUp()) == []
            return
        generating = self.generating
        actions = self.apply(HangUp())
        self.ended = True
        if generating is not None:
            assert CancelLlm(generating) in actions, "the hang-up cancels the reply being generated"
        assert not any(isinstance(a, (Speak, AskLlm)) for a in actions), "nothing new starts at the hang-up"
        if self.unplayed:
            assert any(isinstance(a, StopSpeaking) for a in actions)
        self.unplayed.clear()
        self.generating = None

    # -------------------------------------------------------- invariants
    @invariant()
    def each_final_is_persisted_once_and_asked_once(self) -> None:
        if not hasattr(self, "t"):
            return
        assert self.caller_persisted == self.finals
        asked_words = " ".join(self.asked + list(self.t.queued) + self.unanswered).split()
        assert sorted(asked_words) == sorted(" ".join(self.finals).split()), \
            "each final is asked exactly once, or still queued, or recorded as not answered"

    @invariant()
    def one_reply_at_a_time(self) -> None:
        if hasattr(self, "t") and not self.ended:
            assert (self.t.reply.turn if self.t.reply else None) == self.generating
            assert set(self.t.unplayed) == set(self.unplayed)


TurnMachine.TestCase.settings = examples(500, nightly=10_000)  # CI's 15 minutes: half of what it was
test_turn_taking_state_machine = TurnMachine.TestCase
