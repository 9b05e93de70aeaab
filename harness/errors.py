"""The harness's expected errors, one root (``HarnessError``): each message says what went wrong and what to do
about it. fakertzr's own (``FakeRtzrError``) stay fakertzr's; where the harness hands on one of them (a fixture's
RTZR script that fakertzr refuses), it says so as a ``FixtureError``."""

from __future__ import annotations


class HarnessError(Exception):
    """A replay or a handler under test could not do what was asked (bad input, handler unreachable)."""


class FixtureError(HarnessError):
    """A call fixture, or a spec to make one, cannot be used: the message names the file and the field."""


class HandlerDidNotStart(HarnessError):
    """The handler under test exited or never listened; ``output`` holds its last lines."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output
