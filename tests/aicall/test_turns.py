"""Turn-taking core and sentence splitting: examples and hypothesis properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aicall.sentences import SentenceSplitter
from aicall.turns import (AskLlm, AwaitCaller, CallerFinal, CallerPartial, CallerQuiet, CancelLlm, HangUp, LlmDone,
                          LlmFailed, LlmText, Persist, Played, Speak, StopSpeaking, TurnTaker)

from ..support.budget import examples


def kinds(actions):
    return [type(a).__name__ for a in actions]


def test_a_turn_asks_once_speaks_each_sentence_with_a_mark_and_persists():
    t = TurnTaker("sys")
    ask = t.handle(CallerFinal("안녕하세요 반갑습니다"))
    assert kinds(ask) == ["Persist", "AskLlm"] and ask[1].messages[-1] == {"role": "user", "content": "안녕하세요 반갑습니다"}
    spoken = t.handle(LlmText(1, "네, 반갑습니다. 무엇을 "))
    assert spoken == [Speak(1, 0, "네, 반갑습니다.", "t1s0")]
    done = t.handle(LlmDone(1))
    assert done == [Speak(1, 1, "무엇을", "t1s1"), Persist("bot", "네, 반갑습니다. 무엇을", 1)]
    assert t.bot_speaking
    t.handle(Played("t1s0"))
    t.handle(Played("t1s1"))
    assert not t.bot_speaking and t.heard[1] == ["네, 반갑습니다.", "무엇을"]


def test_finals_during_generation_are_queued_merged_and_asked_exactly_once():
    t = TurnTaker("sys", barge_in=False)
    t.handle(CallerFinal("첫째"))
    assert kinds(t.handle(CallerFinal("둘째"))) == ["Persist"]
    assert kinds(t.handle(CallerFinal("셋째"))) == ["Persist"]
    actions = t.handle(LlmDone(1))
    asks = [a for a in actions if isinstance(a, AskLlm)]
    assert len(asks) == 1 and asks[0].turn == 2 and asks[0].messages[-1]["content"] == "둘째 셋째"


def test_barge_in_clears_playback_and_cancels_the_reply():
    t = TurnTaker("sys")
    t.handle(CallerFinal("질문"))
    t.handle(LlmText(1, "첫 문장입니다. 둘째 문장이 길게 "))
    t.handle(Played("t1s0"))
    t.handle(LlmText(1, "이어집니다. "))
    actions = t.handle(CallerPartial("잠깐만요"))
    assert actions[0] == StopSpeaking((1,))
    assert CancelLlm(1) in actions
    assert Persist("bot", "첫 문장입니다.", 1, note="interrupted (barge-in)") in actions
    assert t.handle(LlmText(1, "늦은 토큰. ")) == []  # a cancelled turn's late tokens are dropped
    nxt = t.handle(CallerFinal("잠깐만요 다른 질문"))
    assert [a.turn for a in nxt if isinstance(a, AskLlm)] == [2]
    assert nxt[-1].messages[-2] == {"role": "assistant", "content": "첫 문장입니다."}


def test_barge_in_off_keeps_speaking():
    t = TurnTaker("sys", barge_in=False)
    t.handle(CallerFinal("질문"))
    t.handle(LlmText(1, "답입니다. "))
    assert t.handle(CallerPartial("음")) == []


def test_llm_failure_speaks_a_fallback_and_moves_on():
    t = TurnTaker("sys")
    t.handle(CallerFinal("질문"))
    t.handle(CallerFinal("추가"))
    actions = t.handle(LlmFailed(1, "HTTP 500"))
    assert kinds(actions) == ["Persist", "Speak", "AskLlm"]
    assert actions[-1].messages[-1]["content"] == "추가"


def test_hang_up_cancels_and_persists_what_is_pending_then_goes_quiet():
    t = TurnTaker("sys")
    t.handle(CallerFinal("질문"))
    t.handle(LlmText(1, "답하는 중"))
    t.handle(CallerFinal("또"))
    actions = t.handle(HangUp())
    assert CancelLlm(1) in actions
    assert Persist("bot", "답하는 중", 1, note="call ended while generating") in actions
    assert Persist("event", "not answered (call ended): 또", 1) in actions
    assert t.handle(LlmText(1, "더")) == [] and t.handle(CallerFinal("?")) == []


events = st.lists(
    st.one_of(
        st.builds(CallerFinal, st.sampled_from(["가", "나다", "라 마", "바사."])),
        st.builds(CallerPartial, st.sampled_from(["", "어", "음 잠깐"])),
        st.tuples(st.just("text"), st.sampled_from(["안녕. ", "하세요", "? ", "네\n"])),
        st.just("done"), st.just("fail"), st.just("play"),
    ),
    max_size=40,
)


@examples(2000)
@given(events, st.booleans())
def test_every_final_reaches_the_llm_exactly_once(script, barge_in):
    t = TurnTaker("sys", barge_in=barge_in)
    finals, asked, marks, actions = [], [], [], []
    for item in script:
        if isinstance(item, CallerFinal):
            finals.append(item.text)
            event = item
        elif isinstance(item, CallerPartial):
            event = item
        elif item == "done" or item == "fail" or isinstance(item, tuple):
            if t.reply is None:
                continue
            turn = t.reply.turn
            event = LlmText(turn, item[1]) if isinstance(item, tuple) else LlmDone(turn) if item == "done" else LlmFailed(turn, "x")
        else:
            if not t.unplayed:
                continue
            event = Played(next(iter(t.unplayed)))
        out = t.handle(event)
        actions += out
        asked += [a.messages[-1]["content"] for a in out if isinstance(a, AskLlm)]
        marks += [a.mark for a in out if isinstance(a, Speak)]
    pending = list(t.queued)
    asked_words = " ".join(asked + pending).split()
    assert sorted(asked_words) == sorted(" ".join(finals).split()), "each final asked once (or still queued)"
    turns = [a.turn for a in actions if isinstance(a, AskLlm)]
    assert turns == list(range(1, len(turns) + 1))
    assert len(marks) == len(set(marks))
    assert t.handle(HangUp()) is not None and t.handle(CallerFinal("x")) == []


@examples(2000)
@given(st.text(alphabet="가나다 .?!,\n3", max_size=300), st.lists(st.integers(1, 20), max_size=40))
def test_sentence_splitting_loses_nothing_and_ignores_chunking(text, cuts):
    def split(chunks):
        s = SentenceSplitter(max_chars=40)
        out = [x for c in chunks for x in s.feed(c)]
        return out + s.flush()

    whole = split([text])
    pieces, pos = [], 0
    for n in cuts:
        pieces.append(text[pos : pos + n])
        pos += n
    pieces.append(text[pos:])
    assert split(pieces) == whole
    assert "".join(whole).replace(" ", "") == "".join(text.split()).replace(" ", "")
    assert all(s and s == s.strip() for s in whole)


def test_a_final_the_caller_talks_on_after_is_held_and_joined_to_the_next():
    """RTZR cut a long utterance at max_utter_duration: answering the first part would talk over the caller."""
    t = TurnTaker("sys")
    held = t.handle(CallerFinal("제가 지난주에 주문한", talks_on=True))
    assert held == [Persist("caller", "제가 지난주에 주문한", 1), AwaitCaller()], "persisted, not asked"
    assert t.handle(CallerPartial("코트가")) == [AwaitCaller()], "still talking: the wait starts again"
    ask = t.handle(CallerFinal("코트가 안 왔어요"))
    assert kinds(ask) == ["Persist", "AskLlm"]
    assert ask[1].messages[-1] == {"role": "user", "content": "제가 지난주에 주문한 코트가 안 왔어요"}
    assert t.handle(CallerQuiet()) == [], "nothing held any more"


def test_a_held_final_with_nothing_after_it_is_answered_when_the_caller_goes_quiet():
    t = TurnTaker("sys")
    t.handle(CallerFinal("여보세요", talks_on=True))
    ask = t.handle(CallerQuiet())
    assert kinds(ask) == ["AskLlm"] and ask[0].messages[-1]["content"] == "여보세요"


def test_a_held_final_at_hang_up_is_kept_as_not_answered():
    t = TurnTaker("sys")
    t.handle(CallerFinal("끊기 전에", talks_on=True))
    assert Persist("event", "not answered (call ended): 끊기 전에", 0) in t.handle(HangUp())
