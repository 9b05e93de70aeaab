"""Is the stream URL's path wrong? A call that failed at its very start (the upgrade refused, or the socket
closed before the handler said a word) is compared with how the handler answers at a path that cannot exist:
the same answer at both makes the path the likely cause, and the message says so before the symptom.

Only a call that already failed that way is probed, so a handler that works never sees a probe; a probe sends
nothing (no ``connected``, no ``start``), so it never becomes a call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp

NO_SUCH_PATH = "/harness-no-such-path"
PROBE_WAIT_S = 0.5  # how long a probe waits for the handler to close a socket that sent nothing (on loopback a
# handler refusing a path closes within milliseconds; the wait is spent on every call a handler closes in silence)
PATH_FIX = "give the right one with --path or --url"


@dataclass(frozen=True)
class HandshakeAnswer:
    """How a handler answered a Media Streams handshake: refused with ``status``, or upgraded and then
    ``closed`` before saying anything, or neither (it kept the socket open, or spoke)."""

    status: int | None = None
    closed: bool = False

    def __str__(self) -> str:  # what the handler does, as a verb phrase
        if self.status is not None:
            return f"answers HTTP {self.status}"
        return "closes the socket without a word" if self.closed else "keeps the socket open"


def path_of(url: str) -> str:
    return urlsplit(url).path or "/"


def no_such_path(url: str) -> str:
    """``url`` at a path no handler serves (its query dropped)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, NO_SUCH_PATH, "", ""))


async def answer_at(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> HandshakeAnswer | None:
    """Open ``url``, send nothing, and see what the handler does within ``PROBE_WAIT_S``; None when it cannot
    be told (the connection itself failed)."""
    try:
        ws = await asyncio.wait_for(
            session.ws_connect(url, headers=headers or {}, timeout=aiohttp.ClientWSTimeout(ws_close=PROBE_WAIT_S)),
            PROBE_WAIT_S * 5)
    except aiohttp.WSServerHandshakeError as exc:
        return HandshakeAnswer(status=exc.status)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        return None
    try:
        message = await ws.receive(timeout=PROBE_WAIT_S)
        closed = message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.ERROR)
    except asyncio.TimeoutError:
        closed = False
    finally:
        await ws.close()
    return HandshakeAnswer(closed=closed)


async def why_refused(session: aiohttp.ClientSession, url: str, status: int, said: str,
                      headers: dict[str, str] | None = None) -> str:
    """The message for a refused upgrade (``status``; ``said``: what the line said of it): a wrong path first
    when the handler refuses a path that cannot exist the same way."""
    path = path_of(url)
    if status == 404:  # not found: the path, whatever else
        return f"the handler refused the WebSocket at path {path}, a path it does not serve: {said}"
    probe = await answer_at(session, no_such_path(url), headers)
    signed = bool(headers and any(k.lower() == "x-twilio-signature" for k in headers))
    signature = ("was X-Twilio-Signature made with the right --twilio-auth-token?" if signed else
                 "does it check X-Twilio-Signature? give --twilio-auth-token")
    if probe == HandshakeAnswer(status=status):
        also = f"; if the path is right, {signature}" if status in (401, 403) else ""
        return (f"the handler refused the WebSocket at path {path}: is --path right? It answered HTTP {status} there "
                f"as at {NO_SUCH_PATH}, a path that cannot exist ({PATH_FIX}){also}")
    if status in (401, 403) and probe is not None:
        return (f"the handler refused the stream at path {path}, a path it serves (at {NO_SUCH_PATH}, a path that "
                f"cannot exist, it {probe}): {signature} ({url} answered HTTP {status})")
    return said


async def why_closed_at_once(session: aiohttp.ClientSession, url: str,
                             headers: dict[str, str] | None = None) -> str | None:
    """A handler closed the call's socket without a word: if it does the same to a socket that sends nothing, at
    this path and at one that cannot exist, it refuses the path before reading anything (the message); None when
    the probes say otherwise (the close had another cause, which the checks tell)."""
    here, nowhere = await asyncio.gather(answer_at(session, url, headers), answer_at(session, no_such_path(url), headers))
    if here is None or here != nowhere or here.status is not None or not here.closed:
        return None
    return (f"the handler closed the WebSocket at path {path_of(url)} before reading anything, as it does at "
            f"{NO_SUCH_PATH}, a path that cannot exist: is --path right? ({PATH_FIX})")
