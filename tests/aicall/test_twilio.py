"""Twilio Media Streams codec, signatures and TwiML."""

from __future__ import annotations

import base64
import json
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicall import twilio

CA, MZ, AC = "CA" + "1" * 32, "MZ" + "2" * 32, "AC" + "3" * 32


def test_parses_every_event_twilio_sends():
    start = {"event": "start", "sequenceNumber": "1", "streamSid": MZ,
             "start": {"streamSid": MZ, "accountSid": AC, "callSid": CA, "tracks": ["inbound"],
                       "customParameters": {"caller": "+8210"},
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    assert twilio.parse_message(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == twilio.Connected("Call")
    assert twilio.parse_message(json.dumps(start)) == twilio.Start(MZ, CA, AC, {"caller": "+8210"})
    media = {"event": "media", "streamSid": MZ, "media": {"track": "inbound", "chunk": "2", "timestamp": "40",
                                                              "payload": base64.b64encode(b"\xff" * 160).decode()}}
    assert twilio.parse_message(json.dumps(media)) == twilio.Media(b"\xff" * 160, 40, 2)
    assert twilio.parse_message(json.dumps({"event": "mark", "streamSid": MZ, "mark": {"name": "t1s0"}})) == twilio.MarkEcho("t1s0")
    assert twilio.parse_message('{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"5"}}') == twilio.Dtmf("5")
    assert twilio.parse_message(json.dumps({"event": "stop", "stop": {"callSid": CA}})) == twilio.Stop(CA)


@given(st.text(max_size=300))
def test_garbage_never_raises(text):
    assert isinstance(twilio.parse_message(text), (twilio.Unknown, twilio.Connected, twilio.Start, twilio.Media,
                                                    twilio.MarkEcho, twilio.Dtmf, twilio.Stop))


def test_outbound_messages():
    assert json.loads(twilio.media_message(MZ, b"\x00\x01")) == {"event": "media", "streamSid": MZ, "media": {"payload": "AAE="}}
    assert json.loads(twilio.mark_message(MZ, "t1s0")) == {"event": "mark", "streamSid": MZ, "mark": {"name": "t1s0"}}
    assert json.loads(twilio.clear_message(MZ)) == {"event": "clear", "streamSid": MZ}


@pytest.mark.parametrize("phone,expected", [
    ("+14158675310", "GvWf1cFY/Q7PnoempGyD5oXAezc="),  # Twilio's request-validation docs
    ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # twilio-node's own test fixture
])
def test_signature_matches_twilios_published_vectors(phone, expected):
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": phone, "Digits": "1234", "From": phone, "To": "+18005551212"}
    assert twilio.compute_signature("12345", url, params) == expected


def test_signature_checks_ports_and_rejects_tampering():
    url = "wss://calls.example.com/twilio/media"
    good = twilio.compute_signature("tok", "wss://calls.example.com:443/twilio/media")
    assert twilio.signature_is_valid("tok", url, None, good)
    assert not twilio.signature_is_valid("tok", url, None, good[:-2] + "AA")
    assert not twilio.signature_is_valid("other", url, None, good)
    assert not twilio.signature_is_valid("tok", url, None, None)


def test_twiml_connects_the_stream_and_hangs_up():
    xml = twilio.connect_twiml("wss://x.example/twilio/media", {"caller": '+82<10>"'})
    root = ElementTree.fromstring(xml)
    stream = root.find("./Connect/Stream")
    assert stream.get("url") == "wss://x.example/twilio/media"
    assert stream.find("Parameter").attrib == {"name": "caller", "value": '+82<10>"'}
    assert [child.tag for child in root] == ["Connect", "Hangup"]


def test_twiml_stays_well_formed_whatever_the_webhook_posts():
    # a From with control characters (issue 22, item 11) made the document ill-formed XML
    xml = twilio.connect_twiml("wss://x.example/twilio/media", {"caller": "+82\x01\x0b10\x1f<x/>\ud800\ufffe\t"})
    stream = ElementTree.fromstring(xml).find("./Connect/Stream")
    assert stream.find("Parameter").get("value") == "+8210<x/>\t"
