"""The pytest fixtures users put into their own suites: replay a fixture against a handler by URL."""

from __future__ import annotations

from pathlib import Path

from aicall.app import create_app
from aicall.config import load_settings
from fakertzr.appserver import AppServer


async def test_replay_against_a_handler_by_url(fake_rtzr, fake_llm, fake_tts, replay):
    env = {"RTZR_CLIENT_ID": fake_rtzr.client_id, "RTZR_CLIENT_SECRET": fake_rtzr.client_secret,
           "RTZR_API_BASE": fake_rtzr.base_url, "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "k",
           "TTS_BASE_URL": fake_tts.base_url, "AICALL_DB": ":memory:"}
    async with AppServer(create_app(load_settings(env, env_file=None))) as handler:
        run = await replay("fixtures/calls/failure2-recognizer-closes-1000", f"{handler.ws_url}/twilio/media")
        assert run.ok, run.failures()
        assert [r.last_user for r in fake_llm.requests] == ["안녕하세요 반갑습니다", "그냥 잘 지냅니다", "아직 안 먹었어요"]
        silent = await replay("fixtures/calls/silent-call", f"{handler.ws_url}/twilio/media")
        assert silent.ok, silent.failures()
        assert fake_llm.requests == []  # each replay starts from clean fakes


def test_a_bundled_call_is_found_by_its_name_from_anywhere(tmp_path, monkeypatch):
    from harness.fixture import load_call, resolve_fixture

    monkeypatch.chdir(tmp_path)  # no fixtures/ here
    assert load_call(resolve_fixture("failure2-recognizer-closes-1000")).name == "failure2-recognizer-closes-1000"
    assert resolve_fixture("my/own-call") == Path("my/own-call")  # a path stays a path


from hypothesis import HealthCheck, given, settings  # noqa: E402

from harness.replay.runner import ErrorLog  # noqa: E402
from harness.fuzz.strategies import calls  # noqa: E402


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=calls(max_faults=1, max_utterances=2))
async def test_drawn_calls_replay_through_the_fixture(fake_rtzr, fake_llm, fake_tts, replay, call):
    """What the plugin's docstring tells a user to write: drawn calls against a handler by URL."""
    env = {"RTZR_CLIENT_ID": fake_rtzr.client_id, "RTZR_CLIENT_SECRET": fake_rtzr.client_secret,
           "RTZR_API_BASE": fake_rtzr.base_url, "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "k",
           "TTS_BASE_URL": fake_tts.base_url, "AICALL_DB": ":memory:"}
    with ErrorLog() as errors:
        async with AppServer(create_app(load_settings(env, env_file=None))) as handler:
            run = await replay(call, f"{handler.ws_url}/twilio/media", pace=8.0, errors=errors)
    assert run.fixture.name == call.name
    assert [c.name for c in run.checks if c.status == "failed"] == [], run.failures()
