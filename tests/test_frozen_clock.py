"""A test that freezes and ticks the clock (freezegun) leaves the suite's waits on other processes alone: the
long runs (examples, proving ground) wait for theirs with ``communicate(timeout=...)`` in a thread beside
the tests, and a tick of six hours elsewhere once made them give up mid-run (CI failed twice so)."""

from __future__ import annotations

import subprocess
import sys
import threading

from freezegun import freeze_time

CHILD = "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.03)"


def test_a_tick_elsewhere_does_not_time_out_a_wait_for_a_process():
    outcome: list[str] = []
    waiting = threading.Event()

    def wait() -> None:  # as deep as the long runs' own waits (a thread pool's worker, run_one, communicate)
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
        waiting.set()
        try:
            out, _ = proc.communicate(timeout=600)
            outcome.append(f"waited out: {len(out.split())} lines")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            outcome.append("timed out")

    def deeper(depth: int) -> None:
        wait() if depth == 0 else deeper(depth - 1)

    thread = threading.Thread(target=deeper, args=(6,))
    thread.start()
    assert waiting.wait(30)
    with freeze_time() as clock:
        clock.tick(6 * 3600)
        thread.join(60)
    assert outcome == ["waited out: 60 lines"]
