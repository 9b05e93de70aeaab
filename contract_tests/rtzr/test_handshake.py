"""The streaming handshake: bearer tokens, parameters, encodings of the query, limits."""

from __future__ import annotations

import asyncio

import pytest
from freezegun import freeze_time

from . import client

GOOD = {"sample_rate": "8000", "encoding": "LINEAR16"}


async def test_missing_or_bad_token_is_401_h0002(rtzr):
    token = await rtzr.token()
    head, payload, sig = token.split(".")
    tampered = ".".join([head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    for authorization in (None, "Bearer", "Bearer not-a-token", f"Bearer {tampered}", f"Basic {token}"):
        status, body = await client.handshake(rtzr.session, rtzr.url(GOOD), authorization)
        assert status == 401, authorization
        assert body["code"] == "H0002"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_bearer_scheme_in_any_case(rtzr, scheme):
    status, _ = await client.handshake(rtzr.session, rtzr.url(GOOD), f"{scheme} {await rtzr.token()}")
    assert status == 101


@pytest.mark.parametrize(
    "query",
    [
        {"encoding": "LINEAR16"},
        {"sample_rate": "8000"},
        {"sample_rate": "4000", "encoding": "LINEAR16"},
        {"sample_rate": "8000", "encoding": "MP3"},
        {"sample_rate": "8000", "encoding": "LINEAR16", "use_itn": "maybe"},
        {"sample_rate": "8000", "encoding": "LINEAR16", "model_name": "nope"},
        {"sample_rate": "8000", "encoding": "LINEAR16", "keywords": "가:7.5"},
        {"sample_rate": "8000", "encoding": "LINEAR16", "domain": "NOT_A_DOMAIN"},
    ],
)
async def test_bad_parameters_are_400_h0001(rtzr, query):
    status, body = await client.handshake(rtzr.session, rtzr.url(query), f"Bearer {await rtzr.token()}")
    assert status == 400
    assert body["code"] == "H0001"


RAW = "sample_rate=8000&encoding=LINEAR16&use_itn=true&keywords=리턴제로:3.5,보이스봇&epd_time=0.5"
SEMI = "sample_rate=8000&encoding=LINEAR16&use_itn=true&keywords=%EB%A6%AC%ED%84%B4%EC%A0%9C%EB%A1%9C:3.5,%EB%B3%B4%EC%9D%B4%EC%8A%A4%EB%B4%87&epd_time=0.5"
FULL = "sample_rate=8000&encoding=LINEAR16&use_itn=true&keywords=%EB%A6%AC%ED%84%B4%EC%A0%9C%EB%A1%9C%3A3.5%2C%EB%B3%B4%EC%9D%B4%EC%8A%A4%EB%B4%87&epd_time=0.5"


@pytest.mark.parametrize("query", [RAW, SEMI, FULL], ids=["raw", "urlencode-keep-colon-comma", "fully-encoded"])
async def test_the_three_ways_clients_encode_the_query_mean_the_same(rtzr, query):
    status, _ = await client.handshake(rtzr.session, rtzr.url(query), f"Bearer {await rtzr.token()}")
    assert status == 101
    if not rtzr.live:
        assert rtzr.fake.journal.connections[-1].query["keywords"] == "리턴제로:3.5,보이스봇"


async def test_concurrent_stream_limit_is_429_a0001_and_frees_on_close(rtzr):
    rtzr.fake.update_config({"max_streams": 2})
    token = await rtzr.token()
    first, second = await rtzr.connect(token=token), await rtzr.connect(token=token)
    status, body = await client.handshake(rtzr.session, rtzr.url(), f"Bearer {token}")
    assert (status, body["code"]) == (429, "A0001")
    await first.close()
    third = await rtzr.connect(token=token)
    await asyncio.gather(second.close(), third.close())


@pytest.mark.parametrize("status,code", [(401, "H0002"), (429, "A0001"), (500, "E500")])
async def test_handshake_refusal_for_the_nth_connection(rtzr, status, code):
    rtzr.fake.add_fault({"type": "reject_handshake", "status": status, "connection": 1})
    token = await rtzr.token()
    results = [await client.handshake(rtzr.session, rtzr.url(), f"Bearer {token}") for _ in range(3)]
    assert [r[0] for r in results] == [101, status, 101]
    assert results[1][1]["code"] == code


async def test_token_expires_after_its_ttl_and_a_new_one_works(rtzr):
    rtzr.require_fake()
    with freeze_time(real_asyncio=True) as clock:
        token = await rtzr.token()
        assert (await client.handshake(rtzr.session, rtzr.url(), f"Bearer {token}"))[0] == 101
        clock.tick(6 * 3600 + 1)
        status, body = await client.handshake(rtzr.session, rtzr.url(), f"Bearer {token}")
        assert (status, body["code"], body["msg"]) == (401, "H0002", "token expired")
        assert (await client.handshake(rtzr.session, rtzr.url(), f"Bearer {await rtzr.token()}"))[0] == 101


async def test_journal_redacts_the_token(rtzr):
    token = await rtzr.token()
    await client.handshake(rtzr.session, rtzr.url(), f"Bearer {token}")
    record = rtzr.fake.journal.connections[-1]
    assert record.headers["Authorization"] == "Bearer <redacted>"
    assert token not in repr(rtzr.fake.journal.to_dict())
