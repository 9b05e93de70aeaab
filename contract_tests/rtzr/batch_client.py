"""A file-API client written the way RTZR's Python samples are (vito-ai/python-tutorial,
stt-chapter-generator/rtzr_openapi_client.py): requests, a token from ``POST /v1/authenticate``, the file
and a JSON ``config`` as multipart form fields, then ``GET /v1/transcribe/{id}`` every ``poll_interval_s``
until the status is ``completed`` or ``failed``. Synchronous, as they are: run it in a thread."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from requests import Session


class FileSttClient:
    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self.session = Session()
        self._token: dict[str, Any] | None = None

    @property
    def token(self) -> str:
        if self._token is None or self._token["expire_at"] < time.time() - 1800:
            resp = self.session.post(f"{self.base_url}/v1/authenticate", timeout=30,
                                     data={"client_id": self.client_id, "client_secret": self.client_secret})
            resp.raise_for_status()
            self._token = resp.json()
        return self._token["access_token"]

    def transcribe_file(self, path: Path, config: dict[str, Any]) -> dict[str, Any]:
        with path.open("rb") as audio:
            resp = self.session.post(f"{self.base_url}/v1/transcribe", headers={"Authorization": f"Bearer {self.token}"},
                                     files={"file": (path.name, audio)},
                                     data={"config": json.dumps(config, ensure_ascii=False)}, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def get_transcription(self, transcribe_id: str) -> dict[str, Any]:
        resp = self.session.get(f"{self.base_url}/v1/transcribe/{transcribe_id}",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def wait_for_result(self, transcribe_id: str, poll_interval_s: float = 5.0, timeout_s: float = 900.0) -> dict[str, Any]:
        deadline = time.time() + timeout_s
        while True:
            if time.time() > deadline:
                raise TimeoutError(f"timed out waiting for transcription {transcribe_id}")
            result = self.get_transcription(transcribe_id)
            if result.get("status") in ("completed", "failed"):
                return result
            time.sleep(poll_interval_s)  # the client's own polling, as RTZR's samples poll
