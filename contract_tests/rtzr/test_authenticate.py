"""POST /v1/authenticate: tokens for good credentials, RTZR-style errors otherwise."""

from __future__ import annotations

import time

import jwt


async def post(rtzr, data):
    async with rtzr.session.post(f"{rtzr.base_url}/v1/authenticate", data=data) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_good_credentials_get_a_jwt_that_lives_six_hours(rtzr):
    status, body = await post(rtzr, {"client_id": rtzr.client_id, "client_secret": rtzr.client_secret})
    assert status == 200
    assert set(body) >= {"access_token", "expire_at"}
    assert isinstance(body["expire_at"], int)
    assert abs(body["expire_at"] - (time.time() + 6 * 3600)) < 120
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] == body["expire_at"]


async def test_wrong_secret_is_401_h0002(rtzr):
    status, body = await post(rtzr, {"client_id": rtzr.client_id, "client_secret": "wrong-" + rtzr.client_secret})
    assert status == 401
    assert body["code"] == "H0002" and body["msg"]


async def test_missing_field_is_400_h0001(rtzr):
    status, body = await post(rtzr, {"client_id": rtzr.client_id})
    assert status == 400
    assert body["code"] == "H0001"


async def test_auth_failure_fault_fails_once_then_recovers_and_secrets_stay_out_of_the_journal(rtzr):
    rtzr.fake.add_fault({"type": "auth_failure", "status": 500})
    good = {"client_id": rtzr.client_id, "client_secret": rtzr.client_secret}
    assert (await post(rtzr, good))[0] == 500
    assert (await post(rtzr, good))[0] == 200
    assert [a.status for a in rtzr.fake.journal.auth] == [500, 200]
    assert rtzr.client_secret not in repr(rtzr.fake.journal.to_dict())
