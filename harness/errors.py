"""The harness's expected errors: each message says what went wrong and what to do about it."""

from __future__ import annotations

from fakertzr.errors import FakeRtzrError


class HarnessError(FakeRtzrError):
    """A replay or a handler under test could not do what was asked (bad input, handler unreachable)."""


class HandlerDidNotStart(HarnessError):
    """The handler under test exited or never listened; ``output`` holds its last lines."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output
