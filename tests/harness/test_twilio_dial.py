"""A call started as Twilio starts it: the webhook's TwiML followed (Say, Pause, Redirect, Hangup) to its stream,
and the whole replay of aicall through its own signed voice webhook."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from harness.fakes.twilio_dial import VoiceWebhook, dial, local_stream_url
from harness.fakes.twilio_webhook import CallWebhook, WebhookError

CALL = CallWebhook.incoming("CA" + "1" * 32, "AC" + "2" * 32, "+821012345678", "+8215880000")


def test_a_stream_on_the_webhooks_own_address_is_opened_without_tls() -> None:
    assert local_stream_url("wss://127.0.0.1:8080/media", "http://127.0.0.1:8080/voice") == "ws://127.0.0.1:8080/media"
    assert local_stream_url("wss://127.0.0.1:8081/media", "http://127.0.0.1:8080/voice") == "wss://127.0.0.1:8081/media"
    assert local_stream_url("wss://calls.example.com/media", "https://calls.example.com/voice") == \
        "wss://calls.example.com/media"


async def _serve(documents: dict[str, str]) -> tuple[web.AppRunner, str, list[dict[str, str]]]:
    asked: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        asked.append({"path": request.path, **{k: v for k, v in (await request.post()).items() if isinstance(v, str)}})
        return web.Response(text=documents[request.path], content_type="text/xml")

    app = web.Application()
    for path in documents:
        app.router.add_post(path, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", asked


async def test_the_twiml_is_followed_through_a_redirect_to_its_stream_and_parameters() -> None:
    runner, base, asked = await _serve({
        "/voice": "<Response><Say>잠시만요</Say><Pause length='1'/><Redirect>/next</Redirect><Hangup/></Response>",
        "/next": "<Response><Connect><Stream url='wss://calls.example.com/media'><Parameter name='caller' "
                 "value='+8210'/></Stream></Connect><Hangup/></Response>"})
    try:
        async with aiohttp.ClientSession() as session:
            dialled = await dial(session, VoiceWebhook(f"{base}/voice"), CALL, "token", pace=None)
    finally:
        await runner.cleanup()
    assert dialled.said == ["잠시만요"] and dialled.documents == 2
    assert dialled.stream_url == dialled.twiml_url == "wss://calls.example.com/media"
    assert dialled.parameters == {"caller": "+8210"}
    assert [a["path"] for a in asked] == ["/voice", "/next"] and all(a["CallSid"] == CALL.call_sid for a in asked)


async def test_a_hangup_ends_the_call_without_a_stream_and_a_redirect_loop_is_an_error() -> None:
    runner, base, _ = await _serve({"/voice": "<Response><Say>안녕히 계세요</Say><Hangup/></Response>",
                                    "/loop": "<Response><Redirect>/loop</Redirect></Response>"})
    try:
        async with aiohttp.ClientSession() as session:
            dialled = await dial(session, VoiceWebhook(f"{base}/voice"), CALL, "token", pace=None)
            with pytest.raises(WebhookError, match="redirected more than 10 times"):
                await dial(session, VoiceWebhook(f"{base}/loop"), CALL, "token", pace=None)
    finally:
        await runner.cleanup()
    assert dialled.stream_url is None and dialled.ended_by == "hangup"


@pytest.mark.timeout(120)
def test_aicall_replayed_through_its_signed_voice_webhook(tmp_path) -> None:
    """aicall checks X-Twilio-Signature on its webhook and its stream with the account's token: signed as Twilio
    signs them, the call passes; told another token, its webhook refuses and the run says so, cause first."""
    cmd = f"PUBLIC_URL=http://127.0.0.1:{{port}} AICALL_DB={tmp_path / 'c.db'} {sys.executable} -m aicall.cli serve --port {{port}}"
    base = [sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed-three", "--voice", "/twilio/voice"]
    done = subprocess.run([*base, "--cmd", cmd, "--report-dir", str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=100)
    assert done.returncode == 0 and "seed-three-turns: PASS" in done.stdout, done.stdout + done.stderr
    assert "POST /twilio/voice" in (tmp_path / "r" / "handler.log").read_text(encoding="utf-8")
    other = subprocess.run([*base, "--cmd", "TWILIO_AUTH_TOKEN=not-the-account-token " + cmd, "--report-dir",
                            str(tmp_path / "r2")], capture_output=True, text=True, timeout=100)
    assert other.returncode == 1, other.stdout + other.stderr
    assert "the voice webhook answered HTTP 403" in other.stdout, other.stdout
