"""A client written the way RTZR's public Python streaming sample is, changing only the base URL.

Like the sample it takes a token with ``requests`` (refreshing when ``expire_at`` has passed),
joins the query by hand, sends ``bearer <token>``, streams a WAV file's raw bytes - header
included - in ``DEFAULT_BUFFER_SIZE`` chunks, sends ``EOS`` and collects what comes back.
The one change besides the base URL: websockets >= 14 calls ``extra_headers``
``additional_headers``.
"""

from __future__ import annotations

import asyncio
import json
import time
from io import DEFAULT_BUFFER_SIZE

import requests
import websockets


class RTZRClient:
    def __init__(self, client_id: str, client_secret: str, api_base: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_base = api_base
        self._sess = requests.Session()
        self._token: dict | None = None

    @property
    def token(self) -> str:
        if self._token is None or self._token["expire_at"] < time.time():
            resp = self._sess.post(
                self.api_base + "/v1/authenticate",
                data={"client_id": self.client_id, "client_secret": self.client_secret},
            )
            resp.raise_for_status()
            self._token = resp.json()
        return self._token["access_token"]

    async def streaming_transcribe(self, filename: str, config: dict | None = None) -> list[dict]:
        if config is None:
            config = dict(
                sample_rate="8000",
                encoding="LINEAR16",
                use_itn="true",
                use_disfluency_filter="false",
                use_profanity_filter="false",
            )
        scheme, host = self.api_base.split("://")
        ws_scheme = "wss" if scheme == "https" else "ws"
        streaming_endpoint = "{}://{}/v1/transcribe:streaming?{}".format(
            ws_scheme, host, "&".join(map("=".join, config.items()))
        )
        conn_kwargs = dict(additional_headers={"Authorization": "bearer " + self.token})
        received: list[dict] = []

        async def streamer(websocket) -> None:
            with open(filename, "rb") as f:
                while True:
                    buff = f.read(DEFAULT_BUFFER_SIZE)
                    if buff is None or len(buff) == 0:
                        break
                    await websocket.send(buff)
                await websocket.send("EOS")

        async def transcriber(websocket) -> None:
            async for msg in websocket:
                msg = json.loads(msg)
                received.append(msg)

        async with websockets.connect(streaming_endpoint, **conn_kwargs) as websocket:
            await asyncio.gather(streamer(websocket), transcriber(websocket))
        return received
