"""Turn-taking for one call, with no I/O: events in, actions out.

Each caller final is given to the LLM exactly once: a final that arrives while a reply is being
generated is queued and merged into the next turn's user message, never dropped, never re-sent.
Replies are spoken sentence by sentence, each followed by a mark; Twilio's mark echoes say what
the caller has heard. Caller speech over the bot (barge-in) clears playback and cancels the rest
of that reply. A final the caller talks on after (RTZR cut a long utterance at ``max_utter_duration``)
is held and joined to the next one: nobody answers a caller who is still talking. If no final
follows (the rest was not words), the shell's ``CallerQuiet`` after a while lets it be answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sentences import SentenceSplitter


# ------------------------------------------------------------------ events
@dataclass(frozen=True)
class CallerFinal:
    text: str
    talks_on: bool = False  # the caller is still talking: a cut, not the end of the turn


@dataclass(frozen=True)
class CallerQuiet:
    """No result for a while after a held final: answer what was held."""


@dataclass(frozen=True)
class CallerPartial:
    text: str


@dataclass(frozen=True)
class LlmText:
    turn: int
    text: str


@dataclass(frozen=True)
class LlmDone:
    turn: int


@dataclass(frozen=True)
class LlmFailed:
    turn: int
    error: str


@dataclass(frozen=True)
class Played:
    """Twilio echoed a mark: the audio before it has played (or was cleared)."""

    mark: str


@dataclass(frozen=True)
class HangUp:
    pass


TurnEvent = CallerFinal | CallerQuiet | CallerPartial | LlmText | LlmDone | LlmFailed | Played | HangUp


# ----------------------------------------------------------------- actions
@dataclass(frozen=True)
class AskLlm:
    turn: int
    messages: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class CancelLlm:
    turn: int


@dataclass(frozen=True)
class Speak:
    turn: int
    index: int
    text: str
    mark: str


@dataclass(frozen=True)
class StopSpeaking:
    """Drop every sentence of these turns not yet sent, and clear what Twilio has buffered."""

    turns: tuple[int, ...]


@dataclass(frozen=True)
class Persist:
    role: str  # "caller", "bot" or "event"
    text: str
    turn: int
    note: str = ""


@dataclass(frozen=True)
class AwaitCaller:
    """A final is held while the caller talks on: (re)start the wait that ends in ``CallerQuiet``."""


TurnAction = AskLlm | CancelLlm | Speak | StopSpeaking | Persist | AwaitCaller

FALLBACK_REPLY = "죄송합니다. 잠시 문제가 있었습니다. 다시 한 번 말씀해 주시겠어요?"


@dataclass
class _Reply:
    turn: int
    splitter: SentenceSplitter = field(default_factory=SentenceSplitter)
    text: str = ""
    sentences: list[str] = field(default_factory=list)
    history_index: int | None = None  # where its assistant message sits in the history, once done


class TurnTaker:
    """See the module docstring. ``handle(event)`` returns the actions to perform, in order."""

    def __init__(self, system_prompt: str, *, barge_in: bool = True) -> None:
        self.barge_in = barge_in
        self.history: list[dict[str, str]] = [{"role": "system", "content": system_prompt}]
        self.turn = 0
        self.reply: _Reply | None = None  # the reply being generated
        self.queued: list[str] = []
        self.held: list[str] = []  # finals the caller talked on after: the start of the turn in progress
        self.unplayed: dict[str, int] = {}  # marks sent, not yet echoed -> their turn
        self.heard: dict[int, list[str]] = {}  # turn -> sentences the caller has heard
        self.replies: dict[int, _Reply] = {}
        self.ended = False

    @property
    def bot_speaking(self) -> bool:
        return bool(self.unplayed)

    def handle(self, event: TurnEvent) -> list[TurnAction]:
        if self.ended:
            return []
        if isinstance(event, CallerFinal):
            return self._final(event.text.strip(), event.talks_on)
        if isinstance(event, CallerQuiet):
            return self._final("", False) if self.held else []
        if isinstance(event, CallerPartial):
            if self.barge_in and self.bot_speaking and event.text.strip():
                return self._interrupt("barge-in")
            return [AwaitCaller()] if self.held else []  # still talking: keep waiting
        if isinstance(event, LlmText):
            return self._llm_text(event)
        if isinstance(event, LlmDone):
            return self._llm_done(event.turn)
        if isinstance(event, LlmFailed):
            return self._llm_failed(event)
        if isinstance(event, Played):
            turn = self.unplayed.pop(event.mark, None)
            if turn is not None:
                index = int(event.mark.rsplit("s", 1)[1])
                self.heard.setdefault(turn, []).append(self._sentence(turn, index))
            return []
        if isinstance(event, HangUp):
            return self._hang_up()
        raise TypeError(f"unknown event {event!r}")

    # ------------------------------------------------------------ internals
    def _final(self, text: str, talks_on: bool = False) -> list[TurnAction]:
        actions: list[TurnAction] = [Persist("caller", text, self.turn + 1)] if text else []
        if talks_on and text:
            self.held.append(text)
            if self.barge_in and self.bot_speaking:
                actions += self._interrupt("caller spoke over the reply")
            return actions + [AwaitCaller()]
        if self.held:
            text, self.held = " ".join([*self.held, text]).strip(), []
        if not text:
            return actions
        if self.reply is not None:
            self.queued.append(text)  # given to the LLM with the next turn, exactly once
            return actions
        if self.barge_in and self.bot_speaking:
            actions += self._interrupt("caller spoke over the reply")
        return actions + self._start_turn(text)

    def _start_turn(self, text: str) -> list[TurnAction]:
        self.turn += 1
        self.history.append({"role": "user", "content": text})
        self.reply = self.replies[self.turn] = _Reply(self.turn)
        return [AskLlm(self.turn, tuple(dict(m) for m in self.history))]

    def _sentence(self, turn: int, index: int) -> str:
        reply = self.replies.get(turn)
        return reply.sentences[index] if reply and index < len(reply.sentences) else ""

    def _speak(self, reply: _Reply, sentences: list[str]) -> list[TurnAction]:
        actions: list[TurnAction] = []
        for sentence in sentences:
            index = len(reply.sentences)
            reply.sentences.append(sentence)
            mark = f"t{reply.turn}s{index}"
            self.unplayed[mark] = reply.turn
            actions.append(Speak(reply.turn, index, sentence, mark))
        return actions

    def _llm_text(self, event: LlmText) -> list[TurnAction]:
        reply = self.reply
        if reply is None or event.turn != reply.turn:
            return []  # a cancelled turn's late tokens
        reply.text += event.text
        return self._speak(reply, reply.splitter.feed(event.text))

    def _llm_done(self, turn: int) -> list[TurnAction]:
        reply = self.reply
        if reply is None or turn != reply.turn:
            return []
        actions = self._speak(reply, reply.splitter.flush())
        reply.history_index = len(self.history)
        self.history.append({"role": "assistant", "content": reply.text.strip()})
        actions.append(Persist("bot", reply.text.strip(), turn))
        return actions + self._next_turn()

    def _llm_failed(self, event: LlmFailed) -> list[TurnAction]:
        reply = self.reply
        if reply is None or event.turn != reply.turn:
            return []
        actions: list[TurnAction] = [Persist("event", f"LLM failed: {event.error}", event.turn)]
        actions += self._speak(reply, [FALLBACK_REPLY])
        self.history.append({"role": "assistant", "content": FALLBACK_REPLY})
        return actions + self._next_turn()

    def _next_turn(self) -> list[TurnAction]:
        self.reply = None
        if not self.queued:
            return []
        text, self.queued = " ".join(self.queued), []
        return self._start_turn(text)

    def _interrupt(self, why: str) -> list[TurnAction]:
        speaking = set(self.unplayed.values())
        turns = tuple(sorted(speaking | ({self.reply.turn} if self.reply else set())))
        actions: list[TurnAction] = [StopSpeaking(turns)]
        self.unplayed.clear()
        for turn in speaking:  # a finished reply cut short: the history keeps what was heard
            done = self.replies[turn]
            if done.history_index is not None:
                self.history[done.history_index]["content"] = " ".join(self.heard.get(turn, []))
        reply = self.reply
        if reply is None:
            return actions + [Persist("event", f"playback cleared ({why})", self.turn)]
        heard = " ".join(self.heard.get(reply.turn, []))
        if heard:
            self.history.append({"role": "assistant", "content": heard})
        actions += [CancelLlm(reply.turn), Persist("bot", heard, reply.turn, note=f"interrupted ({why})")]
        return actions + self._next_turn()

    def _hang_up(self) -> list[TurnAction]:
        self.ended = True
        actions: list[TurnAction] = []
        reply = self.reply
        if reply is not None:
            actions.append(CancelLlm(reply.turn))
            actions.append(Persist("bot", reply.text.strip(), reply.turn, note="call ended while generating"))
        for text in [*self.queued, *self.held]:
            actions.append(Persist("event", f"not answered (call ended): {text}", self.turn))
        self.queued, self.held = [], []
        if self.unplayed:
            actions.append(StopSpeaking(tuple(sorted(set(self.unplayed.values())))))
            self.unplayed.clear()
        return actions
