"""Split an LLM reply into sentences as it streams, so each can go to TTS the moment it is complete."""

from __future__ import annotations

import re

# A sentence ends at . ? ! (or their full-width forms, or …) followed by whitespace, or at a newline.
# "3.5" and "e.g.x" do not end one: the mark must be followed by whitespace.
_BOUNDARY = re.compile(r"(?<=[.?!。？！…])\s+|\n+")
MAX_CHARS = 120  # a run-on reply is cut at its last comma or space, to keep TTS latency low


class SentenceSplitter:
    """Feed text deltas; get back the sentences that are complete so far."""

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars
        self._buffer = ""

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        sentences: list[str] = []
        while True:
            match = _BOUNDARY.search(self._buffer)
            if match is None:
                break
            sentence, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
            if sentence.strip():
                sentences.append(sentence.strip())
        while len(self._buffer) > self.max_chars:
            cut = max(self._buffer.rfind(",", 0, self.max_chars), self._buffer.rfind(" ", 0, self.max_chars))
            cut = cut + 1 if cut > 0 else self.max_chars
            head, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if head.strip():
                sentences.append(head.strip())
        return sentences

    def flush(self) -> list[str]:
        """The rest of the reply, once the LLM is done."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []
