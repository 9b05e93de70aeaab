"""End-to-end fuzzing: ``harness fuzz`` itself, with calls at once, against aicall, every check a property.

The suite runs ``harness fuzz --calls-at-once 8 --pace x2`` (a long run, ``tests/support/long_runs.py``: it
goes on beside the rest of the suite, mostly waiting on calls) against aicall in-process with fakertzr, the
fake LLM and the fake TTS. Its calls are drawn by the package's public strategies
(``harness.fuzz.strategies.waves``: no private copy here), each fault kind covered first, eight in flight
into one aicall; every general check must pass, the cross-call checks too, and each call's own expectations
(a refused call when credentials are refused). A failure is shrunk by the search and written out as a fixture
in ``harness-report/suite-fuzz/fuzz-failures/`` (the message gives ``harness fuzz``'s own report, with the command
that replays it) to replay with ``harness run --fixtures`` and to add to ``fixtures/calls/``. Calls one at a time are fuzzed by ``tests/harness/test_fuzz.py`` and
``tests/harness/test_plugin.py``.

Why x2: the faster the pace, the less wall time a handler has for what the checks measure in audio time (1.5 s
of talk-over before a barge-in clears is 0.375 s at x4), and aicall in-process shares its event loop with the
harness and eight calls. At x8 two CI runs in three (2026-12-06) failed a call for ``recognition_continues``
that passed alone and replayed afresh (the search's own "a flaky verdict"); at x4 one run in three did the same
(a close at 0 ms). Searched for on purpose (``--faults close,drop``, 200 calls beside three busy loops), x4
gave three flaky verdicts: two were the judge's (a final met the hang-up on its way; one recognition, twice
sent, stored once: both fixed and guarded in tests/harness), the third a barge-in cleared 50 ms of wall time
late. The CI's 40 calls at x2 beside two busy loops: no call failed, 82 s.

How many calls: ``HYPOTHESIS_PROFILE`` ci (default, 40, seed 1: the same calls every run), nightly (400),
dev (8); nightly and dev draw from a new seed each session.
"""

from __future__ import annotations

import random

import pytest

from tests.support.budget import PROFILE, scaled

CALLS, NIGHTLY_CALLS = 40, 400
AT_ONCE = 8
SEED = 1 if PROFILE == "ci" else random.SystemRandom().randrange(2**31 - 1)  # ci: the same calls every run


@pytest.mark.long_run("fuzz", examples=max(AT_ONCE, scaled(CALLS, nightly=NIGHTLY_CALLS)), at_once=AT_ONCE, seed=SEED,
                      pace="x2")
def test_generated_calls_eight_at_once_pass_every_check(long_runs):
    run = long_runs.result("fuzz", 1500)
    assert run.summary is not None, f"harness fuzz wrote no fuzz.json (exit {run.returncode}):\n{run.output}"
    search = run.summary["searches"][0]
    assert search["failure"] is None, f"seed {search['seed']}: a drawn call failed:\n{run.output}"
    assert run.returncode == 0, run.output
    assert search["drawn"] == max(AT_ONCE, scaled(CALLS, nightly=NIGHTLY_CALLS)), run.output
    covered = {feature for feature in search["statistics"] if feature.startswith("RTZR fault")}
    assert len(covered) >= 5, f"the coverage part drew few fault kinds: {sorted(covered)}\n{run.output}"
