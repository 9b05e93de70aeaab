"""The fake Calls REST API, driven by the real twilio SDK (its ``Client`` pointed at the fake by
``client.api.base_url``), and its core fed directly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from fakertzr.appserver import AppServer
from harness.errors import HarnessError
from harness.fakes.twiml import Hangup, Say, parse_twiml
from harness.fakes.twilio_rest import (ENDED, NEXT, STATUSES, CallsCore, CallStateError, FakeTwilioRest,
                                       TwilioApiError)

ACCOUNT, TOKEN = "AC" + "0123456789abcdef" * 2, "0123456789abcdef0123456789abcdef"
KEY, SECRET = "SK" + "fedcba9876543210" * 2, "key-secret"
TO, FROM, URL = "+821012345678", "+15005550006", "https://bot.example/voice"


@pytest.fixture(scope="module")
def served():
    """One fake in a thread for the synchronous SDK (requests); each test starts from ``reset()``."""
    fake = FakeTwilioRest(ACCOUNT, TOKEN, api_keys={KEY: SECRET})
    with AppServer(fake.app()) as server:
        yield fake, server


@pytest.fixture
def fake(served):
    served[0].reset()
    return served[0]


def client(served, username: str = ACCOUNT, password: str = TOKEN, account_sid: str | None = None) -> Client:
    """The real SDK, its API domain pointed at the fake (``Domain.absolute_url`` reads ``base_url`` per request)."""
    sdk = Client(username, password, account_sid=account_sid)
    sdk.api.base_url = served[1].base_url
    return sdk


def answered(fake: FakeTwilioRest, sid: str) -> None:
    fake.core.advance(sid, "ringing")
    fake.core.advance(sid, "in-progress")


def test_create_answers_a_queued_call_in_twilios_shape(served, fake):
    call = client(served).calls.create(to=TO, from_=FROM, url=URL, status_callback="https://bot.example/status")
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    assert (call.status, call.direction, call.to, call._from) == ("queued", "outbound-api", TO, FROM)
    assert call.uri == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.sid}.json"
    assert call.date_created is not None and call.start_time is None  # RFC 2822, parsed by the SDK
    kept = fake.calls[call.sid]
    assert kept.current.url == URL and kept.current.method == "POST" and kept.status_callback.endswith("/status")
    assert [(r.method, r.status) for r in fake.requests] == [("POST", 201)]


def test_a_call_is_fetched_and_its_twiml_replaced_then_it_is_hung_up(served, fake):
    sdk = client(served)
    sid = sdk.calls.create(to=TO, from_=FROM, twiml=str(VoiceResponse().pause(length=1))).sid
    assert sdk.calls(sid).fetch().status == "queued"
    answered(fake, sid)
    response = VoiceResponse()
    response.say("안녕히 계세요")
    response.hangup()
    assert sdk.calls(sid).update(twiml=response).status == "in-progress"
    call = fake.calls[sid]
    assert parse_twiml(call.current.twiml) == [Say("안녕히 계세요"), Hangup()]  # what the runner follows next
    assert [i.by for i in call.instructions] == ["create", "update"]
    ended = sdk.calls(sid).update(status="completed")
    assert (ended.status, call.ended_by) == ("completed", "api")
    assert ended.end_time is not None and ended.duration is not None


def test_an_ended_call_cannot_be_updated(served, fake):
    sdk = client(served)
    sid = sdk.calls.create(to=TO, from_=FROM, url=URL).sid
    answered(fake, sid)
    fake.core.advance(sid, "completed")  # the caller hung up
    for change in ({"status": "completed"}, {"twiml": "<Response><Hangup/></Response>"}, {"url": URL}):
        with pytest.raises(TwilioRestException) as caught:
            sdk.calls(sid).update(**change)
        assert (caught.value.status, caught.value.code) == (400, 21220)
        assert caught.value.msg.endswith("Call is not in-progress. Cannot redirect.")


def test_a_call_not_yet_answered_cannot_be_redirected_but_can_be_canceled(served, fake):
    sdk = client(served)
    sid = sdk.calls.create(to=TO, from_=FROM, url=URL).sid
    with pytest.raises(TwilioRestException, match="not in-progress") as caught:
        sdk.calls(sid).update(url=URL)
    assert caught.value.code == 21220
    assert sdk.calls(sid).update(status="canceled").status == "canceled"


def test_canceled_leaves_a_call_in_progress_be(served, fake):
    sdk = client(served)
    sid = sdk.calls.create(to=TO, from_=FROM, url=URL).sid
    answered(fake, sid)
    assert sdk.calls(sid).update(status="canceled").status == "in-progress"


@pytest.mark.parametrize("fields, status, code", [
    ({"to": "", "from_": FROM, "url": URL}, 400, 21201),
    ({"to": TO, "from_": "", "url": URL}, 400, 21213),
    ({"to": TO, "from_": FROM}, 400, 21205),
    ({"to": TO, "from_": FROM, "url": "not a url"}, 400, 21205),
], ids=["no-to", "no-from", "no-instructions", "bad-url"])
def test_create_refuses_as_twilio_does(served, fake, fields, status, code):
    with pytest.raises(TwilioRestException) as caught:
        client(served).calls.create(**fields)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert fake.calls == {} and fake.requests[-1].code == code


def test_url_wins_over_twiml_on_create(served, fake):
    sid = client(served).calls.create(to=TO, from_=FROM, url=URL, twiml="<Response/>").sid
    assert (fake.calls[sid].current.url, fake.calls[sid].current.twiml) == (URL, None)


def test_authentication(served, fake):
    with pytest.raises(TwilioRestException) as caught:
        client(served, password="wrong").calls.create(to=TO, from_=FROM, url=URL)
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert caught.value.msg == "Unable to create record: Authenticate"  # what the SDK makes of Twilio's body
    other = "AC" + "f" * 32
    with pytest.raises(TwilioRestException) as caught:  # good credentials, another account's URL
        client(served, account_sid=other).calls.create(to=TO, from_=FROM, url=URL)
    assert caught.value.code == 20003
    call = client(served, KEY, SECRET, account_sid=ACCOUNT).calls.create(to=TO, from_=FROM, url=URL)  # an API key
    assert call.account_sid == ACCOUNT


def test_an_unknown_call_is_404_20404(served, fake):
    sid = "CA" + "0" * 32
    with pytest.raises(TwilioRestException) as caught:
        client(served).calls(sid).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)
    assert f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json was not found" in caught.value.msg


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning",
                            "ignore:The 'auth' parameter is deprecated:DeprecationWarning")  # the SDK's aiohttp use
async def test_the_async_sdk_and_the_ended_event():
    fake = FakeTwilioRest(ACCOUNT, TOKEN)
    async with AppServer(fake.app()) as server:
        sdk = Client(ACCOUNT, TOKEN, http_client=AsyncTwilioHttpClient())
        sdk.api.base_url = server.base_url
        try:
            call = await sdk.calls.create_async(to=TO, from_=FROM, url=URL)
            ended = fake.ended(call.sid)
            answered(fake, call.sid)
            assert not ended.is_set()
            await sdk.calls(call.sid).update_async(status="completed")
            assert ended.is_set() and fake.calls[call.sid].status == "completed"
            await fake.wait_for(lambda f: f.requests[-1].ended_at is not None, timeout=2)
        finally:
            await sdk.http_client.close()


def test_error_bodies_have_twilios_shape():
    core = CallsCore(ACCOUNT, TOKEN)
    with pytest.raises(TwilioApiError) as caught:
        core.fetch(ACCOUNT, "CA" + "1" * 32)
    assert caught.value.body() == {
        "code": 20404, "message": f"The requested resource /2010-04-01/Accounts/{ACCOUNT}/Calls/CA{'1' * 32}.json "
                                  "was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}
    call = core.create(ACCOUNT, {"To": TO, "From": FROM, "Url": URL})
    with pytest.raises(TwilioApiError) as caught:
        core.update(ACCOUNT, call.sid, {"Url": URL, "Twiml": "<Response/>"})
    assert (caught.value.status, caught.value.body()["code"]) == (400, None)  # the fake's own: Twilio's code unknown


def test_the_runner_cannot_move_a_call_where_twilio_never_does():
    core = CallsCore(ACCOUNT, TOKEN)
    call = core.add_incoming(TO, FROM, url=URL, sid="CA" + "2" * 32)
    assert (call.sid, call.status, call.direction) == ("CA" + "2" * 32, "ringing", "inbound")
    with pytest.raises(CallStateError, match="ringing; it can move to .*in-progress.*, not completed"):
        core.advance(call.sid, "completed")
    core.advance(call.sid, "in-progress")
    core.advance(call.sid, "completed")
    with pytest.raises(CallStateError, match="nothing: it has ended"):
        core.advance(call.sid, "in-progress")
    assert issubclass(CallStateError, HarnessError)


def test_the_statuses_are_twilios_and_a_call_never_goes_back():
    # the enum of Twilio's OpenAPI description (twilio-oai, call_enum_status), in the order a call lives them
    assert STATUSES == ("queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled")
    assert ENDED == set(STATUSES) - {"queued", "ringing", "in-progress"} and not ENDED & set(NEXT)
    stage = {"queued": 0, "ringing": 1, "in-progress": 2, **{s: 3 for s in ENDED}}
    assert all(stage[after] > stage[before] for before, afters in NEXT.items() for after in afters)
    assert NEXT["in-progress"] == {"completed", "failed"}  # an answered call is never busy, unanswered or canceled


moves = st.lists(st.one_of(st.tuples(st.just("advance"), st.sampled_from(STATUSES)),
                           st.tuples(st.just("update"), st.sampled_from(["canceled", "completed", "redirect"]))),
                 max_size=12)


@settings(max_examples=300, deadline=None)
@given(moves)
def test_a_call_only_moves_along_the_table_and_an_ended_call_stays_ended(steps):
    core = CallsCore(ACCOUNT, TOKEN, clock=iter(range(10_000)).__next__)
    call = core.create(ACCOUNT, {"To": TO, "From": FROM, "Url": URL})
    for kind, value in steps:
        before = call.status
        try:
            if kind == "advance":
                core.advance(call.sid, value)
            else:
                core.update(ACCOUNT, call.sid, {"Url": URL} if value == "redirect" else {"Status": value})
        except CallStateError:
            assert value not in NEXT.get(before, ())
        except TwilioApiError as exc:
            assert (exc.code, before == "in-progress") == (21220, False)
        assert call.status == before or call.status in NEXT[before]
        assert before not in ENDED or call.status == before
    assert [s for s, _ in call.history][0] == "queued" and call.history[-1][0] == call.status
