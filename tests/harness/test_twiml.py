"""TwiML as the fake Twilio reads it: what twilio-python's VoiceResponse writes comes back as the verbs it meant,
and what the fake cannot follow is refused with a message naming the element."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.voice_response import Connect, VoiceResponse

from harness.errors import HarnessError
from harness.fakes.twiml import (ConnectStream, Hangup, Pause, Redirect, Say, TwimlError, parse_twiml,
                                 reachable)


def test_the_sdks_twiml_comes_back_as_the_verbs_it_meant():
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url="wss://bot.example/twilio/media", name="bot", status_callback="https://bot.example/s")
    stream.parameter(name="caller", value="+821012345678")
    stream.parameter(name="lang", value="ko")
    response.append(connect)
    response.say("연결이 끊어졌습니다", voice="Polly.Seoyeon", language="ko-KR")
    response.pause(length=2)
    response.hangup()

    assert parse_twiml(str(response)) == [
        ConnectStream(url="wss://bot.example/twilio/media", parameters={"caller": "+821012345678", "lang": "ko"},
                      name="bot", status_callback="https://bot.example/s"),
        Say("연결이 끊어졌습니다", voice="Polly.Seoyeon", language="ko-KR"),
        Pause(2),
        Hangup(),
    ]


def test_parameters_are_what_start_custom_parameters_will_carry():
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url="wss://bot.example/media")
    stream.parameter(name="a", value="1 & <2>")
    response.append(connect)
    (verb,) = parse_twiml(str(response).encode("utf-8"))
    assert isinstance(verb, ConnectStream) and verb.parameters == {"a": "1 & <2>"}  # escaped by the SDK, read back
    assert verb.track == "inbound_track"  # Twilio's default


def test_redirect_and_defaults():
    response = VoiceResponse()
    response.pause()
    response.redirect("https://bot.example/next")
    response.say("never said")
    verbs = parse_twiml(str(response))
    assert verbs == [Pause(1), Redirect("https://bot.example/next", "POST"), Say("never said")]
    assert reachable(verbs) == [Pause(1), Redirect("https://bot.example/next", "POST")]
    assert reachable([Say("a"), Hangup(), Say("b")]) == [Say("a"), Hangup()]
    assert reachable([Say("a")]) == [Say("a")]


def test_an_empty_response_is_a_call_that_simply_ends():
    assert parse_twiml(str(VoiceResponse())) == []


def test_ws_is_refused_as_twilio_does_unless_asked_for_and_relative_urls_follow_the_document():
    twiml = '<Response><Connect><Stream url="ws://127.0.0.1:8080/media"/></Connect></Response>'
    with pytest.raises(TwimlError, match="not a wss:// URL.*allow_ws=True"):
        parse_twiml(twiml)
    assert parse_twiml(twiml, allow_ws=True) == [ConnectStream(url="ws://127.0.0.1:8080/media")]
    relative = '<Response><Connect><Stream url="/media"/></Connect></Response>'
    assert parse_twiml(relative, base_url="https://bot.example/voice") == [ConnectStream("wss://bot.example/media")]
    with pytest.raises(TwimlError, match="relative"):
        parse_twiml(relative)


def _connect_room() -> str:
    response = VoiceResponse()
    connect = Connect()
    connect.room("my-room")
    response.append(connect)
    return str(response)


def _gather() -> str:
    response = VoiceResponse()
    response.gather(num_digits=1)
    return str(response)


REFUSED = [
    ("", "empty"),
    ("<Response><Say>unclosed</Response>", "not well-formed XML"),
    ("<Reply><Say>hi</Say></Reply>", "root element is <Reply>"),
    ("<Response><say>hi</say></Response>", "case-sensitive: <Say>, not <say>"),
    ("<Response><Speak>hi</Speak></Response>", "<Speak> .* not a TwiML verb"),
    (_gather(), "<Gather> .* verb the fake Twilio does not follow"),
    (_connect_room(), "holds <Room>"),
    ("<Response><Connect/></Response>", "holds nothing"),
    ("<Response><Connect><Stream/></Connect></Response>", "no url attribute"),
    ('<Response><Connect><Stream url="https://x.example/m"/></Connect></Response>', "not a wss:// URL"),
    ('<Response><Connect><Stream url="wss://x.example/m?token=1"/></Connect></Response>', "query string"),
    ('<Response><Connect><Stream url="wss://x.example/m"><Parameter name="a"/></Stream></Connect></Response>',
     "needs both name and value"),
    ('<Response><Connect><Stream url="wss://x.example/m"><Say>x</Say></Stream></Connect></Response>',
     "only <Parameter>"),
    ('<Response><Pause length="0"/></Response>', "length='0' is not a whole number >= 1"),
    ('<Response><Pause length="two"/></Response>', "length='two'"),
    ('<Response><Say loop="-1">x</Say></Response>', "loop='-1'"),
    ("<Response><Redirect/></Response>", "<Redirect> has no URL"),
    ('<Response><Redirect method="PUT">https://x/y</Redirect></Response>', "GET or POST"),
    ("<Response><Hangup>now</Hangup></Response>", "holds text 'now'"),
    ("<Response>hello<Hangup/></Response>", "<Response> holds text 'hello'"),
    ("<Response><Hangup/>bye</Response>", "text 'bye' after <Hangup>"),
    ('<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><Response><Say>&b;</Say></Response>',
     "<!DOCTYPE r>"),
]


@pytest.mark.parametrize("twiml, why", REFUSED, ids=[why for _, why in REFUSED])
def test_what_the_fake_cannot_follow_is_refused_by_name(twiml: str, why: str):
    with pytest.raises(TwimlError, match=why):
        parse_twiml(twiml)


def test_a_twiml_error_is_a_harness_error():
    assert issubclass(TwimlError, HarnessError)


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True)
verbs = st.one_of(
    st.builds(ConnectStream, url=st.from_regex(r"wss://[a-z]{1,10}\.example/[a-z]{0,8}", fullmatch=True),
              parameters=st.dictionaries(names, text, max_size=4)),
    st.builds(Say, text=text.map(str.strip)),
    st.builds(Pause, seconds=st.integers(1, 600)),
    st.just(Hangup()),
    st.builds(Redirect, url=st.from_regex(r"https://[a-z]{1,10}\.example/[a-z]{0,8}", fullmatch=True),
              method=st.sampled_from(["GET", "POST"])),
)


def _written_by_the_sdk(drawn: list) -> str:
    response = VoiceResponse()
    for verb in drawn:
        if isinstance(verb, ConnectStream):
            connect = Connect()
            stream = connect.stream(url=verb.url)
            for name, value in verb.parameters.items():
                stream.parameter(name=name, value=value)
            response.append(connect)
        elif isinstance(verb, Say):
            response.say(verb.text)
        elif isinstance(verb, Pause):
            response.pause(length=verb.seconds)
        elif isinstance(verb, Hangup):
            response.hangup()
        else:
            response.redirect(verb.url, method=verb.method)
    return str(response)


@settings(max_examples=150, deadline=None)
@given(st.lists(verbs, max_size=6))
def test_any_document_the_sdk_writes_from_these_verbs_reads_back_as_them(drawn: list):
    assert parse_twiml(_written_by_the_sdk(drawn)) == drawn
