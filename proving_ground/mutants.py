"""The proving ground's catalogue: the reference handlers, the bugs that can be put back into each, and
which check must catch each bug on which bundled call.

A bug class is named for what the caller or the real service would see go wrong. Each is put back by
``MUTANT=<name>`` into every reference handler, in its own style (a failed send raises in Python's
``websockets``, is silently dropped by Node's ``ws``; a Flask handler's threads race differently from
an asyncio one's), and must be failed by the check named here, with a message naming the failure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HANDLERS_DIR = Path(__file__).resolve().parent / "handlers"
NODE_DIR = HANDLERS_DIR / "node_handler"


@dataclass(frozen=True)
class ReferenceHandler:
    name: str  # the column in the table of docs/checks.md
    style: str
    command: str  # ``harness run --cmd``: {port} filled in
    path: str = "/media"

    def available(self) -> str | None:
        """Why this handler cannot run here (None: it can); the Node handler's packages are installed from its
        lock file (``npm ci``) the first time they are missing."""
        if self.name != "node ws":
            return None
        if shutil.which("node") is None:
            return "node is not installed (apt-get install nodejs npm)"
        if not (NODE_DIR / "node_modules" / "ws").exists():
            if shutil.which("npm") is None:
                return "its npm packages are not installed, and npm is not either (apt-get install npm)"
            done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                return f"npm ci in {NODE_DIR} failed: {(done.stderr or done.stdout).strip()[-300:]}"
        return None


PY = sys.executable
HANDLERS = (
    ReferenceHandler("websockets", "asyncio, a plain websockets server and client, aiohttp for HTTP",
                     f"{PY} {HANDLERS_DIR / 'websockets_handler.py'} --port {{port}}"),
    ReferenceHandler("flask-sock", "synchronous Flask + flask-sock, a thread per call as Twilio's Python sample is "
                     "written, requests and websockets' sync client",
                     f"{PY} {HANDLERS_DIR / 'flask_handler.py'} --port {{port}}"),
    ReferenceHandler("node ws", "Node.js, the ws package for both sockets, fetch for HTTP, console logging",
                     f"node {HANDLERS_DIR / 'node_handler' / 'server.js'} --port {{port}}"),
    ReferenceHandler("fastapi prod", "a production-style FastAPI backend in one module: the synchronous openai client "
                     "(chat and non-streamed TTS) in a thread pool, a session dict keyed by call SID, a post-call summary, "
                     "tracebacks logged with logger.error(traceback.format_exc())",
                     f"{PY} {HANDLERS_DIR / 'fastapi_handler.py'} --port {{port}}"),
)


@dataclass(frozen=True)
class Mutant:
    name: str  # MUTANT=<name>
    check: str  # the check that must fail
    fixture: str  # the bundled call that shows it
    pace: str  # harness run --pace
    bug: str  # what was put back, in a line
    says: str  # a word the failure's message must hold (the failure named)
    at_once: int = 1  # calls at once into the handler (``fixture`` is then a ``together`` group of bundled calls)


MUTANTS = (
    Mutant("no-credential-check", "refuses_without_credentials", "failure1-credentials-missing", "fast",
           "starts without its RTZR credentials, takes the call, hangs up without a word", "failure 1"),
    Mutant("silent-refusal", "refuses_without_credentials", "failure1-credentials-refused", "fast",
           "RTZR refuses its credentials: ends the call without telling the caller", "failure 1"),
    Mutant("no-reconnect", "recognition_continues", "failure2-recognizer-closes-1000", "fast",
           "RTZR closes the stream (1000) after the first final: never opens another", "failure 2"),
    Mutant("closes-after-first-final", "recognition_continues", "seed-three-turns", "fast",
           "ends its own stream (EOS) after the first final, never opens another", "by the handler"),
    Mutant("no-stall-watchdog", "recognition_continues", "recognizer-stalls", "fast",
           "does not notice a stream that stalls (open, silent)", "stalled"),
    Mutant("resends-finalized-audio", "finals_to_llm_once", "failure2-recognizer-closes-1000", "fast",
           "after a reconnect, resends the whole call: the first utterance is recognised and asked again", "times"),
    Mutant("drops-queued-final", "finals_to_llm_once", "rapid-back-to-back", "x2",
           "a final that comes while the LLM is answering is dropped", "never reached"),
    Mutant("answers-mid-utterance", "expectations", "long-utterance", "fast",
           "answers RTZR's final cut at max_utter_duration while the caller talks on", "still talking"),
    Mutant("reply-outlives-call", "upstream_closed_after_hangup", "failure3-hangup-while-llm-generates", "fast",
           "the reply is not cancelled at the hang-up: its LLM request stays open", "failure 3"),
    Mutant("state-race", "no_errors", "failure4-hangup-while-tts-streams", "x4",
           "the call's state is dropped at the hang-up while its reply runs on (KeyError / TypeError)", "rror"),
    Mutant("swallowed-race", "upstream_closed_after_hangup", "failure4-hangup-while-tts-streams", "x4",
           "the same race, its error swallowed: the TTS is read on for a call that has ended", "failure 3"),
    Mutant("send-after-close", "stops_sending_after_hangup", "failure4-hangup-while-tts-streams", "x4",
           "streams TTS audio after the hang-up; each failed send is logged", "failure 4"),
    Mutant("silent-send-after-close", "stops_sending_after_hangup", "failure4-hangup-while-tts-streams", "x4",
           "streams TTS audio after the hang-up; failed sends vanish without an error", "failure 4"),
    Mutant("leaves-rtzr-open", "upstream_closed_after_hangup", "seed-three-turns", "fast",
           "never closes its RTZR stream after the hang-up", "still open"),
    Mutant("no-stream-sid", "twilio_messages", "seed-three-turns", "fast",
           "sends media and marks without the streamSid", "streamSid"),
    Mutant("binary-media", "twilio_messages", "seed-three-turns", "fast",
           "sends the bot's audio as binary frames", "binary"),
    Mutant("wrong-sample-rate", "bot_audio_rate", "seed-three-turns", "fast",
           "sends the TTS's 24 kHz audio as if it were 8 kHz", "sample rate"),
    Mutant("one-early-clear", "barge_in", "barge-in", "realtime",
           "clears playback once, before its first reply, and never when the caller talks over it", "talked over"),
    Mutant("no-barge-in", "barge_in", "barge-in", "realtime",
           "never clears playback: the caller, who talks over the first reply once it starts, is talked over", "never cleared"),
    Mutant("words-twice", "finals_to_llm_once", "seed-three-turns", "fast",
           "the history gets the final and the LLM wrapper appends it again: every request gives the caller's words twice",
           "in one request"),
    Mutant("answers-after-hangup", "stops_sending_after_hangup", "caller-hangs-up-mid-utterance", "fast",
           "the results loop outlives the hang-up: the final RTZR gives after it (the EOS) is sent to the LLM",
           "reply to nobody"),
    Mutant("blocks-event-loop", "unaffected_by_neighbours", "stalled-neighbour", "x4",
           "one call's LLM request blocks every call (the sync client on the event loop; Flask: one lock around it)",
           "froze", at_once=2),
    Mutant("blocks-on-tts", "unaffected_by_neighbours", "stalled-tts-neighbour", "x4",
           "one call's TTS request blocks every call (the sync client's speech on the event loop; Flask: one lock around it)",
           "froze", at_once=2),
    Mutant("one-current-call", "replies_reach_own_caller", "busy-hour", "x4",
           "the current call kept in one module-level variable: replies go to the latest caller's line",
           "another", at_once=3),
    Mutant("shared-history", "replies_reach_own_caller", "busy-hour", "x4",
           "one conversation history for every call: each call's LLM is given the other calls' words",
           "shared", at_once=3),
)

MUTANTS += (
    Mutant("pcm-payload", "bot_audio_is_speech", "seed-three-turns", "fast",
           "sends the reply as 16-bit linear PCM, not mu-law: the caller hears noise", "16-bit linear PCM"),
    Mutant("audio-twice", "tts_audio_sent_once", "seed-three-turns", "fast",
           "sends each chunk of the bot's audio twice: the caller hears every reply stutter", "twice"),
    Mutant("first-sentence-only", "whole_reply_spoken", "seed-three-turns", "fast",
           "speaks only the first sentence of each reply: half an answer", "never went to TTS"),
    Mutant("sentences-as-tasks", "replies_in_order", "replies-streamed-slowly", "x4",
           "starts each sentence's TTS as its own task: sentences' audio interleaved or out of order", "out of order"),
    Mutant("token-once", "expectations", "token-expires-mid-call", "fast",
           "fetches its RTZR token once per process and reuses it past its expiry: deaf after it", "token"),
    Mutant("long-debounce", "turn_latency", "answers-within-2s", "fast",
           "waits 2.5 s after each final in case the caller goes on: every turn answered late", "over the budget"),
    Mutant("deaf-while-speaking", "expectations", "talks-over-the-bot", "realtime",
           "sends silence to RTZR instead of the caller while the bot replies (\"so it does not hear itself\"): what the "
           "caller says over a reply is lost", "never recognised"),
    Mutant("forgets-history", "llm_told_conversation", "seed-three-turns", "fast",
           "each LLM request holds only the system prompt and the latest final: an LLM that forgets what was said",
           "does not carry"),
)

OVER_MANY_CALLS = {  # bugs no one call shows: judged over many calls into one launched handler
    "keeps-audio": "keeps every call's audio in a global list forever: the handler's memory grows with every call "
                   "(flagged by harness fuzz and harness load with --cmd: tests/proving_ground/test_resources.py)",
}

CHECKS_WITHOUT_A_MUTANT = {
    "finals_persisted": "only aicall's store is readable; guarded by tests/harness/test_checks.py and the timeline properties",
}
