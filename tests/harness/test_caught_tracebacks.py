"""Caught or uncaught, told by how the runtime prints, not by a traceback's shape (issue: a production-style
handler's ``logger.error(traceback.format_exc())`` of a chained exception was read as an exception nobody
caught, and ``harness fuzz`` shrank a call to that false failure).

The logs below are what CPython 3.11 printed for each case (paths and times replaced)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.judge.events import RtzrEnd
from harness.judge.checks import CheckContext, no_errors
from harness.judge.handler_log import LogReader
from harness.judge.timeline import CallTimeline
CHAINED = """\
  File "/app/main.py", line 6, in chained
    raise ConnectionError("no close frame received or sent")
ConnectionError: no close frame received or sent

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/main.py", line 8, in chained
    raise RuntimeError("rtzr receive loop ended") from e
RuntimeError: rtzr receive loop ended
"""
DURING = """\
  File "/app/main.py", line 11, in during
    {}["CA1"]
    ~~^^^^^^^
KeyError: 'CA1'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/main.py", line 13, in during
    raise ValueError("bad")
ValueError: bad
"""
TB = "Traceback (most recent call last):\n"
AFTER = "2026-12-05 10:00:01,000 INFO main: call=CA1 event=hangup\n"

CAUGHT = {  # one record each: one caught error
    "logger.error(traceback.format_exc()), direct cause":
        "2026-12-05 10:00:00,000 ERROR main: " + TB + CHAINED + "\n" + AFTER,
    "logger.error(traceback.format_exc()), during handling":
        "2026-12-05 10:00:00,000 ERROR main: " + TB + DURING + "\n" + AFTER,
    "logger.exception, direct cause": "2026-12-05 10:00:00,000 ERROR main: call=CA1 receive failed\n" + TB + CHAINED + AFTER,
    "loguru, format_exc": "2026-12-05 10:00:00.000 | ERROR    | bot:run:12 - " + TB + DURING + AFTER,
    "basicConfig default, exc_info": "ERROR:main:reply failed\n" + TB + CHAINED + AFTER,
    # a cause that was never raised has no traceback of its own: its exception line alone opens the chain
    # (websockets' ConnectionClosedError from the ConnectionResetError of an RTZR drop, as a handler logged it)
    "format_exc, a cause with no traceback": "2026-12-05 10:00:00,000 ERROR phone: call=CA1 rtzr connection lost\n"
        "ConnectionResetError: [Errno 104] Connection reset by peer\n\n"
        "The above exception was the direct cause of the following exception:\n\n" + TB
        + '  File "/app/main.py", line 391, in converse\n    async for raw in rtzr:\n'
        "websockets.exceptions.ConnectionClosedError: no close frame received or sent\n\n" + AFTER,
}
UNCAUGHT = {  # what the runtime prints for an exception nobody caught
    "Task exception was never retrieved": "2026-12-05 10:00:00,000 ERROR asyncio: Task exception was never retrieved\n"
        "future: <Task finished name='Task-2' coro=<t() done> exception=RuntimeError('rtzr receive loop ended')>\n"
        + TB + CHAINED + AFTER,
    "Exception in thread": "Exception in thread Thread-1 (chained):\n" + TB + CHAINED + AFTER,
    "Exception in ASGI application": "ERROR:    Exception in ASGI application\n" + TB + CHAINED + AFTER,
    "a bare traceback, no record before it": TB + CHAINED + AFTER,
    "websockets' connection handler failed": "2026-12-05 10:00:00,000 ERROR websockets.server: connection handler failed\n"
        + TB + DURING + AFTER,
}


def blocks(text: str) -> list:
    reader = LogReader()
    for i, line in enumerate(text.splitlines()):
        reader.feed(line, float(i))
    return reader.blocks


@pytest.mark.parametrize("name", CAUGHT)
def test_one_record_with_a_chained_traceback_is_one_caught_error(name):
    found = blocks(CAUGHT[name])
    assert len(found) == 1, [b.text for b in found]
    assert not found[0].unhandled
    last = [line for line in CAUGHT[name].replace(AFTER, "").splitlines() if line.strip()][-1]
    assert found[0].lines[-1] == last, "the whole chain is in the one block, to its last exception"
    assert "event=hangup" not in found[0].text


@pytest.mark.parametrize("name", UNCAUGHT)
def test_what_the_runtime_prints_for_an_uncaught_exception_is_uncaught_chain_and_all(name):
    found = blocks(UNCAUGHT[name])
    assert len(found) == 1 and found[0].unhandled, [(b.unhandled, b.text) for b in found]
    assert found[0].text.count("Traceback (most recent call last):") == 2


def test_a_warnings_chained_traceback_is_no_error():
    assert blocks("2026-12-05 10:00:00,000 WARNING main: retrying the LLM\n" + TB + CHAINED + AFTER) == []


RTZR_DROP = RtzrEnd(1.0, connection=0, how="dropped")


def _judge(log: str) -> object:
    reader = LogReader()
    for line in log.splitlines():
        reader.feed(line, 1.5)  # while the RTZR drop the fixture provoked is being handled
    return no_errors(CheckContext(CallTimeline([RTZR_DROP]), {}, [], errors_logged=reader.blocks))


def test_a_caught_chained_error_about_a_provoked_failure_is_expected():
    assert _judge(CAUGHT["logger.error(traceback.format_exc()), direct cause"]).ok


def test_an_uncaught_task_death_in_the_same_moment_fails_and_says_nobody_caught_it():
    result = _judge(UNCAUGHT["Task exception was never retrieved"])
    assert not result.ok
    assert "an exception nobody caught" in result.message and "RTZR dropped" in result.message


def test_a_caught_error_about_nothing_provoked_still_fails_and_says_it_was_caught():
    reader = LogReader()
    for line in CAUGHT["logger.exception, direct cause"].splitlines():
        reader.feed(line, 9.0)
    result = no_errors(CheckContext(CallTimeline([RTZR_DROP]), {}, [], errors_logged=reader.blocks))
    assert not result.ok and "caught and logged by the handler" in result.message and "nobody" not in result.message


def _printed_by(code: str) -> str:
    """What a Python process printed (stdout and stderr, as the harness reads a handler: one pipe)."""
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60)
    return done.stdout


LAST_RESORT = """\
import logging
try:
    b"".decode("ascii", "strict") + {}["stream ended"]
except KeyError:
    logging.getLogger("websockets.client").error("unexpected internal error", exc_info=True)
print("call CA1: RTZR stream closed", flush=True)
"""


def test_a_library_loggers_error_printed_by_the_last_resort_handler_was_caught_and_logged():
    """websockets' sync client logs "unexpected internal error" with its traceback through a logger nobody
    configured: logging's last-resort handler prints the message and the traceback with no level word, in one
    write. Seen from a flask-sock handler while RTZR closed its stream, 8 calls at once: it was read as a bare
    traceback, "an exception nobody caught", and failed ``no_errors`` on a call whose own failure it was."""
    out = _printed_by(LAST_RESORT)
    assert out.startswith("unexpected internal error\nTraceback"), out  # what CPython really printed
    reader = LogReader()
    reader.feed_text(out, 1.5)  # read at once, as written
    assert len(reader.blocks) == 1 and not reader.blocks[0].unhandled, [b.text for b in reader.blocks]
    assert reader.blocks[0].lines[0] == "unexpected internal error" and "RTZR stream closed" not in reader.blocks[0].text
    assert no_errors(CheckContext(CallTimeline([RTZR_DROP]), {}, [], errors_logged=reader.blocks)).ok
    caught = no_errors(CheckContext(CallTimeline([]), {}, [], errors_logged=reader.blocks))
    assert not caught.ok and "caught and logged" in caught.message, "about nothing provoked it is still an error"


def test_a_plain_line_read_before_a_bare_traceback_is_not_its_record():
    """The handler's own output line, read earlier, does not make a later bare traceback caught."""
    reader = LogReader()
    reader.feed_text("call CA1: RTZR stream stalled\n", 1.0)
    reader.feed_text(TB + CHAINED, 1.2)
    assert len(reader.blocks) == 1 and reader.blocks[0].unhandled and reader.blocks[0].lines[0] == TB.strip()


FLASK_VIEW_RAISES = """\
from flask import Flask
app = Flask("phone")
@app.route("/media")
def media():
    raise RuntimeError("rtzr receive loop ended")
app.test_client().get("/media")
"""


def test_a_flask_view_that_raised_is_an_exception_nobody_caught():
    """Flask logs a view's exception at error level ("Exception on /media [GET]"): the handler never caught it."""
    out = _printed_by(FLASK_VIEW_RAISES)
    assert "ERROR in app: Exception on /media [GET]" in out, out
    reader = LogReader()
    reader.feed_text(out, 1.5)
    assert len(reader.blocks) == 1 and reader.blocks[0].unhandled, [b.text for b in reader.blocks]
    result = no_errors(CheckContext(CallTimeline([RTZR_DROP]), {}, [], errors_logged=reader.blocks))
    assert not result.ok and "an exception nobody caught" in result.message
