"""Suite-wide options, hypothesis profiles (see tests/support/budget.py) and the suite's long runs
(tests/support/long_runs.py): started when the session is collected, for the tests marked
``long_run("examples")``, ``long_run("matrix")``, ``long_run("fuzz", ...)`` or a command's ``long_run(NAME, command=...,
env=..., timeout=...)`` that were selected, and shared by them."""

import freezegun
import pytest
from hypothesis import HealthCheck, settings

from tests.support.budget import PROFILE, SCALE
from tests.support.long_runs import LongRuns

RUNS = LongRuns()

for _name in SCALE:
    # The example database lives in .hypothesis/ (git-ignored); failures are replayed from it first.
    # ``ci`` is derandomized: the same examples every run, so CI's verdict on a commit is not luck;
    # ``nightly`` and ``dev`` search anew each time (that is where new counterexamples are found).
    settings.register_profile(_name, deadline=None, print_blob=True, derandomize=_name == "ci",
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(PROFILE if PROFILE in SCALE else "ci")

# freezegun moves time.monotonic for every thread: a test's clock.tick(6 h) made the long runs' waits for their
# processes (subprocess.communicate(timeout=...), in a thread beside the tests) see six hours go by, and give up
# mid-run. Waits on other processes keep the real clock.
freezegun.configure(extend_ignore_list=["subprocess", "concurrent.futures"])


def pytest_addoption(parser):
    parser.addoption(
        "--rtzr-live",
        action="store_true",
        default=False,
        help="run contract_tests/rtzr against the real RTZR service "
        "(needs RTZR_CLIENT_ID and RTZR_CLIENT_SECRET; uses paid minutes)",
    )


def pytest_configure(config):
    if PROFILE not in SCALE:
        raise pytest.UsageError(f"HYPOTHESIS_PROFILE={PROFILE!r}: known profiles are {', '.join(SCALE)}")


def pytest_collection_modifyitems(config, items):
    """The tests that read the suite's long runs go last, so the runs (started when the session is collected,
    below) go on beside everything else; hypothesis tests get the suite's timeout (120 s) times the
    profile's scale, unless they set their own."""
    items.sort(key=lambda item: item.get_closest_marker("long_run") is not None)  # stable: the rest keep their order
    if SCALE.get(PROFILE, 1.0) <= 1.0:
        return
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(120 * SCALE[PROFILE]))


def pytest_report_header(config):
    return f"hypothesis profile: {PROFILE} (HYPOTHESIS_PROFILE; ci, nightly or dev)"


def pytest_collection_finish(session):
    """Start the long runs the selected tests read: they go on beside the rest of the suite (a ``fuzz`` marker's
    keywords are ``run_fuzz``'s options)."""
    if session.config.option.collectonly:
        return
    markers = [m for item in session.items for m in item.iter_markers("long_run")]
    fuzz = next((m.kwargs for m in markers if m.args[0] == "fuzz"), None)
    commands = {m.args[0]: m.kwargs for m in markers if m.args[0] not in ("fuzz", "examples", "matrix")}
    RUNS.start({m.args[0] for m in markers}, fuzz, commands)


def pytest_sessionfinish(session):
    RUNS.close()


@pytest.fixture(scope="session")
def long_runs():
    return RUNS
