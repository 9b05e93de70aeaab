"""How the workers of one ``fakertzr serve --workers N`` reach each other: a request to every other worker on
its private port, and their answers merged into one (``state``, the journal)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp


class WorkerUnreachable(Exception):
    """A peer worker did not answer on its private port."""


@dataclass
class Peers:
    """The other workers of this fake, reached on their private ports."""

    index: int
    count: int
    urls: dict[int, str] = field(default_factory=dict)  # worker index -> http://127.0.0.1:PORT
    session: aiohttp.ClientSession | None = None

    async def send(self, method: str, path: str, query: str, body: bytes | None) -> list[tuple[int, int, Any]]:
        """The same request to every other worker: (worker, status, JSON answer)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        target = f"{path}{'?' + query if query else ''}"

        async def one(index: int) -> tuple[int, int, Any]:
            try:
                return index, *await self.request_one(index, method, target, headers, body)
            except WorkerUnreachable as exc:
                return index, 502, {"error": str(exc)}

        return list(await asyncio.gather(*(one(i) for i in sorted(self.urls))))

    async def request_one(self, index: int, method: str, path: str, headers: dict[str, str],
                          body: bytes | None = None) -> tuple[int, Any]:
        """One request to worker ``index``: (status, JSON answer). Raises ``WorkerUnreachable``."""
        assert self.session is not None
        try:
            async with self.session.request(method, f"{self.urls[index]}{path}", data=body, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise WorkerUnreachable(f"worker {index} unreachable: {type(exc).__name__}") from None


def merge_states(own: dict[str, Any], index: int, others: list[tuple[int, int, Any]]) -> dict[str, Any]:
    """One ``state`` for all workers: counts summed, each worker's own figures under ``workers``."""
    every = [(index, own), *((i, s) for i, status, s in others if status == 200)]
    merged = dict(own)
    for key in ("active_streams", "batch_jobs", "connections", "connections_total", "tasks"):
        merged[key] = sum(s.get(key, 0) for _, s in every)
    fired: dict[int, int] = {}
    for _, state in every:
        for fault in state.get("faults", []):
            fired[fault["id"]] = fired.get(fault["id"], 0) + fault.get("fired", 0)
    merged["faults"] = [{**f, "fired": fired.get(f["id"], f.get("fired", 0))} for f in own.get("faults", [])]
    merged["workers"] = sorted(({"worker": i, "pid": s.get("pid"), "active_streams": s.get("active_streams"),
                                 "connections_total": s.get("connections_total"), "tasks": s.get("tasks")}
                                for i, s in every), key=lambda w: w["worker"])
    return merged


def merge_journals(pages: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """One journal page from every worker's page of the same query: records in connection-index order."""
    records = sorted((c for p in pages for c in p.get("connections", [])), key=lambda c: c["index"])
    following = records[limit - 1]["index"] + 1 if len(records) > limit else None
    ended: dict[str, int] = {}
    for page in pages:
        for how, n in page.get("dropped", {}).get("ended", {}).items():
            ended[how] = ended.get(how, 0) + n
    return {
        "connections": records[:limit],
        "next": following,
        "total": sum(p.get("total", 0) for p in pages),
        "dropped": {"connections": sum(p.get("dropped", {}).get("connections", 0) for p in pages), "ended": ended,
                    "finals": sum(p.get("dropped", {}).get("finals", 0) for p in pages),
                    "auth": sum(p.get("dropped", {}).get("auth", 0) for p in pages)},
        "auth": [a for p in pages for a in p.get("auth", [])],
    }


# ------------------------------------------------------------------ worker
