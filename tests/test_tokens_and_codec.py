"""Tokens (expiry with freezegun, tampering, revocation) and the G.711 codec."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from callaudio.g711 import alaw_to_pcm16, pcm16_to_ulaw, ulaw_to_linear16, ulaw_to_pcm16
from fakertzr.tokens import TokenIssuer, bearer_token


def test_token_lives_its_ttl_then_expires():
    with freeze_time("2026-01-01 00:00:00") as clock:
        issuer = TokenIssuer(ttl_s=6 * 3600)
        token = issuer.issue("me")
        assert token.expire_at == 1767225600 + 6 * 3600
        clock.tick(6 * 3600 - 1)
        assert issuer.verify(token.access_token) == ("me", "")
        clock.tick(2)
        assert issuer.verify(token.access_token) == (None, "token expired")


def test_tampered_and_foreign_tokens_are_refused():
    issuer = TokenIssuer()
    header, payload, signature = issuer.issue("me").access_token.split(".")
    forged = ".".join([header, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), signature])
    assert issuer.verify(forged)[0] is None
    assert TokenIssuer().verify(issuer.issue("me").access_token) == (None, "invalid token")
    assert issuer.verify("not-a-jwt") == (None, "invalid token")


def test_revocation_expires_every_issued_token():
    issuer = TokenIssuer()
    old = issuer.issue("me").access_token
    issuer.revoke_all()
    assert issuer.verify(old) == (None, "token expired")
    assert issuer.verify(issuer.issue("me").access_token)[0] == "me"


@pytest.mark.parametrize("header,token", [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"),
                                          ("Basic abc", None), ("Bearer", None), (None, None), ("", None)])
def test_bearer_scheme_is_case_insensitive(header, token):
    assert bearer_token(header) == token


def _audioop():
    if importlib.util.find_spec("audioop") is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    return audioop


@pytest.mark.skipif(_audioop() is None, reason="audioop is gone (Python 3.13+): nothing to compare with")
def test_g711_is_bit_exact_with_the_reference_encoder_and_decoders():
    audioop = _audioop()
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert pcm16_to_ulaw(every) == audioop.lin2ulaw(every.tobytes(), 2)
    codes = bytes(range(256))
    assert ulaw_to_pcm16(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert ulaw_to_linear16(codes) == audioop.ulaw2lin(codes, 2)
    assert alaw_to_pcm16(codes).tobytes() == audioop.alaw2lin(codes, 2)


def test_mulaw_straight_to_linear16_bytes_is_the_decoder_little_endian():
    codes = bytes(range(256)) * 2
    assert ulaw_to_linear16(codes) == ulaw_to_pcm16(codes).astype("<i2").tobytes()
    assert ulaw_to_linear16(b"") == b""


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
def test_mulaw_round_trip_error_is_within_one_quantisation_step(values):
    x = np.array(values, dtype=np.int16)
    y = ulaw_to_pcm16(pcm16_to_ulaw(x)).astype(int)
    step = np.maximum(8, 2 ** (np.floor(np.log2(np.abs(x.astype(int)) + 132)) - 4))
    assert np.all(np.abs(y - x) <= step + 4)
    assert ulaw_to_pcm16(pcm16_to_ulaw(y.astype(np.int16))).tolist() == y.tolist()
