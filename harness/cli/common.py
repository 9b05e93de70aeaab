"""What the ``harness`` subcommands share: argument types, the target options, the live progress line, and the
lines that say where the fakes are."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, NoReturn

from harness.fakes.services import FakeNetwork, FakeServices
from harness.replay.targets import READY_TIMEOUT_S


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_pace(text: str) -> float | None:
    """``realtime`` -> 1.0, ``fast`` -> None (as fast as the handler takes it), ``x4`` -> 4.0."""
    if text == "realtime":
        return 1.0
    if text == "fast":
        return None
    if text.startswith("x"):
        try:
            value = float(text[1:])
        except ValueError:
            value = 0.0
        if value > 0:
            return value
    raise argparse.ArgumentTypeError(f"pace must be realtime, fast or xN (e.g. x4), got {text!r}")


def parse_ports(text: str) -> tuple[int, int, int]:
    """``RTZR,LLM,TTS`` ports, e.g. ``8765,8766,8767`` (0 for a free one)."""
    try:
        ports = tuple(int(p) for p in text.split(","))
    except ValueError:
        ports = ()
    if len(ports) != 3 or not all(0 <= p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"ports must be three numbers RTZR,LLM,TTS (e.g. 8765,8766,8767), got {text!r}")
    return ports  # type: ignore[return-value]


def whole_above_zero(unit: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number above 0 (``unit``, as "milliseconds", for the error message)."""
    of = f" of {unit}" if unit else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number{of} above 0, got {text!r}")
        return value

    return parse


parse_gap_ms = whole_above_zero("milliseconds")


parse_count = whole_above_zero()


def parse_positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def add_target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--cmd", metavar="COMMAND", help="launch the handler: {port} {rtzr_url} {llm_url} {tts_url} are "
                        "filled in; PORT, RTZR_API_BASE, RTZR_CLIENT_ID, RTZR_CLIENT_SECRET, OPENAI_BASE_URL, "
                        "OPENAI_API_KEY and TTS_BASE_URL are set. Its output is saved as handler.log with the report")
    target.add_argument("--target", metavar="WS_URL", help="a handler already running, pointed at the fakes "
                        "(the harness prints the export lines for them; see --fake-ports)")
    stream = parser.add_mutually_exclusive_group()
    stream.add_argument("--path", help=f"with --cmd: the stream's path on 127.0.0.1:{{port}} (default {'/twilio/media'}; "
                        "pipecat's runner serves /ws)")
    stream.add_argument("--url", metavar="WS_URL_TEMPLATE", help="with --cmd: the stream URL, {port} filled in "
                        "(e.g. ws://127.0.0.1:{port}/media-stream)")
    parser.add_argument("--ready-timeout", type=parse_positive, default=READY_TIMEOUT_S, metavar="S",
                        help=f"how long the handler may take to listen (default {READY_TIMEOUT_S:g} s)")


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """``--tls`` and ``--steer``: how the fakes meet a handler that will not take plain-HTTP base URLs."""
    parser.add_argument("--tls", action="store_true", help="serve the fakes over https/wss with a CA made for this "
                        "run, trusted by the handler through SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS and "
                        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (RTZR_API_HOST and OPENAI_API_HOST for handlers that build "
                        "https://{host} themselves)")
    parser.add_argument("--steer", action="store_true", help="also steer the vendor hosts a handler hard-codes "
                        "(openapi.vito.ai, api.openai.com, naveropenapi.apigw.ntruss.com, ...) to the fakes through "
                        "an HTTPS proxy given in HTTPS_PROXY and its kin; any other host is refused and named, and "
                        "each call is judged reaches_only_faked_hosts (implies --tls; the docs' Handlers page says which "
                        "clients read the proxy variables)")


def add_voice_option(parser: argparse.ArgumentParser) -> None:
    """``--voice`` and ``--place``: calls start at the handler's voice webhook, or are placed by the handler, as
    Twilio starts them."""
    parser.add_argument("--voice", metavar="PATH|URL", help="start each call as Twilio does: POST the handler's voice "
                        "webhook (a path on the launched handler, or a URL with --target), follow its TwiML to "
                        "<Connect><Stream> with its <Parameter>s; the handler is told a fake Twilio account "
                        "(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_API_BASE) whose REST API ends the call when "
                        "asked (Status=completed) and follows new TwiML given to a live call (Twiml= or Url=)")
    parser.add_argument("--place", metavar="PATH|URL", help="have the handler place each call: POST this endpoint of "
                        "the handler (a path on the launched handler, or a URL with --target; {to} filled in) with "
                        "To=<the caller's number>, wait for its POST .../Calls.json to that number, and dial it as Twilio "
                        "does (ringing, answered, its Url fetched or its Twiml read, to <Connect><Stream>); a fixture's "
                        "\"start\" in call.json chooses between --voice and --place per call")


def network_of(args: argparse.Namespace) -> FakeNetwork:
    twilio = bool(getattr(args, "voice", None) or getattr(args, "place", None))  # the handler is told its account
    return FakeNetwork(tls=bool(getattr(args, "tls", False) or getattr(args, "steer", False)),
                       steer=bool(getattr(args, "steer", False)), twilio=twilio,
                       twilio_auth_token=getattr(args, "twilio_auth_token", None))


def pace_name(pace: float | None) -> str:
    return "fast" if pace is None else ("realtime" if pace == 1.0 else f"x{pace:g}")


TTS_SAYS = ("the fake TTS answers as OpenAI's does: mp3 unless response_format asks for wav, flac, opus or pcm, at "
            "24 kHz (pcm: raw 16-bit little-endian mono at 24 kHz); each request speaks its own tone")


def print_fakes(fakes: FakeServices, *, paste: bool) -> None:
    if paste:
        print("the fakes are up; start your handler with:\n" + fakes.exports() + f"\n({TTS_SAYS})", flush=True)
    else:
        print(f"fakes: RTZR {fakes.rtzr_url}, LLM {fakes.llm_url}, TTS {fakes.tts_url}\n({TTS_SAYS})", flush=True)


class ProgressLine:
    """The load run's live line: rewritten in place on a terminal, one line every 10 s otherwise; a
    message ending in a newline stays."""

    def __init__(self, out=sys.stdout) -> None:
        self.out, self.tty = out, out.isatty()
        self._last = 0.0
        self._width = 0

    def __call__(self, message: str) -> None:
        if message.endswith("\n"):
            self._clear()
            self.out.write(message)
        elif self.tty:
            self._clear()
            self.out.write(message[:160])
            self._width = len(message[:160])
        elif time.monotonic() - self._last >= 10.0:
            self._last = time.monotonic()
            self.out.write(message + "\n")
        self.out.flush()

    def _clear(self) -> None:
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self._width = 0
