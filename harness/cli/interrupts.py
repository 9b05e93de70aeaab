"""Ctrl-C and SIGTERM, as a CI tool must take them: the work stops, everything it started is ended by the same
cleanup a normal end runs (handlers, fakes, temporary files), what finished is kept, and the exit status says
which signal it was, as a shell reports one (128 + the signal: 130 for SIGINT, 143 for SIGTERM; pytest exits 2 on
Ctrl-C but still writes its JUnit XML of the tests that ran, which is what ``harness`` does too).

SIGTERM is what CI sends at a timeout (GitHub Actions, GitLab, ``timeout(1)``); its default action would end the
process at once, skipping every ``finally``, and leave the handler the harness started running in its own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Any, Callable, Coroutine, Iterator, TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``; a ``KeyboardInterrupt``, so code that lets Ctrl-C through (hypothesis,
    pools, ``except Exception``) lets this through too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def how(self) -> str:
        return "Ctrl-C (SIGINT)" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


def run_until_signal(main: Coroutine[Any, Any, T], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> T:
    """``asyncio.run(main)``, where SIGINT and SIGTERM alike cancel ``main`` (its ``finally`` blocks and context
    managers run, as on any end) and then raise ``Interrupted``. A second signal during that cleanup cancels it too.

    While the loop is being set up or closed a signal is only noted, never raised: an exception raised inside the
    loop's own machinery (uvloop's signal setup, ``Runner.close``) leaves the loop half-started, and what the user
    saw was a traceback. A signal noted while the loop started cancels ``main`` as soon as it runs; one noted while
    the loop closed raises ``Interrupted`` once it has."""
    got: list[int] = []
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it gets signals

    def note(signum: int, frame: object) -> None:
        got.append(signum)

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(signum: int) -> None:
            got.append(signum)
            task.cancel()

        watched = SIGNALS if in_main_thread else ()
        for signum in watched:
            loop.add_signal_handler(signum, stop, signum)
        try:
            if got:  # came while the loop was starting
                main.close()
                raise asyncio.CancelledError
            return await main
        except asyncio.CancelledError:
            if got:
                raise Interrupted(got[0]) from None
            raise
        finally:
            for signum in watched:
                loop.remove_signal_handler(signum)  # puts back the default, which would end the process at once
                signal.signal(signum, note)

    before = {signum: handler for signum in (SIGNALS if in_main_thread else ())
              if (handler := signal.getsignal(signum)) is not None}  # None: not set from Python, nothing to put back
    try:
        for signum in before:
            signal.signal(signum, note)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(guarded())
    finally:  # what was there before (``signals_interrupt``'s handler, say), not the defaults the loop leaves
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if got:  # the signal came as the loop closed, after ``main`` had finished
        raise Interrupted(got[0])
    return result


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """For synchronous work (hypothesis in the main thread): SIGTERM raises ``Interrupted`` as Ctrl-C raises
    ``KeyboardInterrupt``, and a plain Ctrl-C comes out as ``Interrupted(SIGINT)``."""

    def raise_interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, raise_interrupted) for signum in SIGNALS}
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

