"""What the caller hears and what the LLM is told (harness.judge.heard, harness.judge.bot_audio): each check
passes on a good timeline and fails on the bad one it exists to catch, with the message that names it."""

from __future__ import annotations

import base64
import io

import numpy as np
import soundfile

from callaudio.g711 import pcm16_to_ulaw
from harness.judge.events import Clear, LlmRequest, Media, SpeechStart, Stop, TtsRequest
from harness.fakes.tts import TONES_HZ
from harness.judge.bot_audio import analyse, encoding_guess
from harness.judge.checks import CheckContext, bot_audio_rate
from harness.judge.heard import (bot_audio_is_speech, llm_told_conversation, replies_in_order, tts_audio_sent_once,
                                 whole_reply_spoken)
from harness.judge.timeline import CallTimeline
REPLY = "네, 잘 들었습니다. 더 도와드릴까요?"


def tone(hz: float, seconds: float, rate: int = 8000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate) * 32767).astype(np.int16)


def media(payloads: list[bytes]) -> list[tuple[float, dict]]:
    return [(0.01 * i, {"event": "media", "media": {"payload": base64.b64encode(p).decode()}}) for i, p in enumerate(payloads)]


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def ctx(*events: Event, bot=None, expect=None, pace: float | None = None) -> CheckContext:
    return CheckContext(CallTimeline(sorted(events, key=lambda e: e.wall), bot), expect or {}, None, [],
                        audio_plays=pace is not None, pace=pace)


def tts(index: int, at: float, text: str, audio_s: float = 1.0, **more) -> Event:
    return TtsRequest(at, **{"index": index, "text": text, "status": 200, "audio_s": audio_s, "ended": at + 0.01, **more})


def sent(at: float, index: int | None, ms: float = 100.0) -> Event:
    return Media(at, ms=ms, **{"tts": index} if index is not None else {})


def llm(index: int, at: float, user: str, told=(), reply: str = REPLY, **more) -> Event:
    return LlmRequest(at, **{"index": index, "user": user, "reply": reply, "status": 200, "ended": at + 0.05,
                             "told": (("system", "s"), *told, ("user", user)), **more})


STOP = Stop(20.0, how="stop")


# ------------------------------------------------------------------ the encoding the caller hears
def test_mu_law_speech_passes_and_other_encodings_are_named():
    speech = tone(TONES_HZ[0], 1.0)
    asked = tts(0, 0.0, "가나", 1.0)
    good = analyse(media(chunks(pcm16_to_ulaw(speech), 160)))
    assert good.heard and bot_audio_is_speech(ctx(asked, bot=good)).ok
    pcm = analyse(media(chunks(speech.astype("<i2").tobytes(), 320)))
    result = bot_audio_is_speech(ctx(asked, sent(0.1, None), bot=pcm))
    assert not result.ok and "16-bit linear PCM, little-endian at 8 kHz" in result.message and "noise" in result.message
    slow = tone(TONES_HZ[0], 1.0, 24000).astype("<i2").tobytes()  # 24 kHz PCM: read at 8 kHz its tone is a third
    assert "another rate than 8 kHz" in encoding_guess(chunks(slow, 320))
    wav = io.BytesIO()
    soundfile.write(wav, speech, 8000, format="WAV", subtype="PCM_16")
    assert encoding_guess([wav.getvalue()]).startswith("a WAV file")
    mp3 = io.BytesIO()
    soundfile.write(mp3, speech, 8000, format="MP3", subtype="MPEG_LAYER_III")
    assert encoding_guess(chunks(mp3.getvalue(), 400)).startswith("MP3")
    assert encoding_guess([b"\xff" * 4000]).startswith("silence")  # mu-law's silence
    quiet = bot_audio_is_speech(ctx(asked, sent(0.1, None), bot=analyse(media([b"\xff" * 4000]))))
    assert not quiet.ok and "hears silence" in quiet.message and "noise" not in quiet.message
    assert encoding_guess([b"\0" * 4000]).startswith("silence")  # a constant: no sound either
    assert encoding_guess([np.random.default_rng(1).integers(0, 256, 8000, dtype=np.uint8).tobytes()]).startswith("noise")


def test_a_law_is_named():
    from callaudio.g711 import _build_alaw_decode  # noqa: F401 - the table exists: encode by searching it

    decode = _build_alaw_decode()
    speech = tone(TONES_HZ[0], 1.0).astype(np.int32)
    order = np.argsort(decode)
    alaw = order[np.clip(np.searchsorted(decode[order], speech), 0, 255)].astype(np.uint8).tobytes()
    assert encoding_guess(chunks(alaw, 160)).startswith("A-law")


def test_no_tts_request_skips_and_too_little_audio_skips():
    assert bot_audio_is_speech(ctx(sent(0.1, None))).skipped
    short = analyse(media([pcm16_to_ulaw(tone(TONES_HZ[0], 0.05))]))
    assert bot_audio_is_speech(ctx(tts(0, 0.0, "가"), bot=short)).skipped


# ------------------------------------------------------------------ once, and at the right pitch
def test_audio_sent_twice_is_named_as_such_not_as_a_sample_rate():
    speech = pcm16_to_ulaw(tone(TONES_HZ[0], 1.0))
    doubled = [c for c in chunks(speech, 800) for _ in range(2)]
    bot = analyse(media(doubled))
    asked = tts(0, 0.0, "가나", 1.0)
    events = [asked, *(sent(0.01 * k, 0 if bot.tone_of_message(k) else None, 100.0) for k in range(len(doubled)))]
    result = tts_audio_sent_once(ctx(*events, bot=bot))
    assert not result.ok and "sent twice" in result.message and "2.0x" in result.message
    assert bot_audio_rate(ctx(*events, bot=bot)).ok, "a repeat is heard at the right pitch: no sample-rate mistake"
    once = [asked, *(sent(0.01 * k, 0, 100.0) for k in range(10))]
    assert tts_audio_sent_once(ctx(*once)).ok


def test_interleaved_messages_are_told_apart_by_their_own_tone():
    a, b = (chunks(pcm16_to_ulaw(tone(hz, 1.0)), 800) for hz in TONES_HZ[:2])
    bot = analyse(media([c for pair in zip(a, b) for c in pair]))
    assert [bot.tone_of_message(k) for k in range(4)] == [TONES_HZ[0], TONES_HZ[1], TONES_HZ[0], TONES_HZ[1]]


# ------------------------------------------------------------------ the whole reply
def test_a_reply_whose_later_sentence_never_went_to_tts_fails_once_the_handler_moved_on():
    first = [llm(0, 1.0, "가나"), tts(0, 1.1, "네, 잘 들었습니다.", 1.0), sent(1.2, 0, 1000.0)]
    later = [llm(1, 3.0, "다라"), tts(1, 3.1, "네, 잘 들었습니다.", 1.0), tts(2, 3.2, "더 도와드릴까요?", 0.5),
             sent(3.2, 1, 1000.0), sent(3.3, 2, 500.0)]
    result = whole_reply_spoken(ctx(*first, *later, STOP))
    assert not result.ok and "'더 도와드릴까요?' (sentence 2 of 2) never went to TTS" in result.message
    whole = [llm(0, 1.0, "가나"), tts(0, 1.1, "네, 잘 들었습니다.", 1.0), tts(1, 1.2, "더 도와드릴까요?", 0.5),
             sent(1.2, 0, 1000.0), sent(1.3, 1, 500.0)]
    assert whole_reply_spoken(ctx(*whole, *later, STOP)).ok


def test_two_replies_in_flight_that_share_a_sentence_each_speak_their_own():
    """aicall at fast pace after a stall (CI, the examples table): two finals at once, two LLM requests 21 ms apart,
    each reply ending "더 도와드릴까요?", spoken in order: the first reply's second sentence is the first reply's."""
    both = [llm(0, 3.299, "가나"), llm(1, 3.320, "다라"),
            tts(0, 3.339, "네, 잘 들었습니다.", 1.0), tts(1, 3.3391, "더 도와드릴까요?", 0.5),
            tts(2, 3.346, "네, 잘 들었습니다.", 1.0), tts(3, 3.347, "더 도와드릴까요?", 0.5),
            *(sent(3.35 + 0.1 * k, k, (1000.0, 500.0)[k % 2]) for k in range(4))]
    assert whole_reply_spoken(ctx(*both, STOP)).ok, whole_reply_spoken(ctx(*both, STOP)).message
    assert replies_in_order(ctx(*both, STOP)).ok, replies_in_order(ctx(*both, STOP)).message
    # ... and a reply cut by a barge-in does not take the new reply's sentence that matches its own
    cut = [llm(0, 1.0, "가나"), tts(0, 1.1, "네, 잘 들었습니다.", 1.0), sent(1.2, 0, 300.0), Clear(1.5),
           llm(1, 2.0, "다라", reply="더 도와드릴까요?"), tts(1, 2.1, "더 도와드릴까요?", 0.5), sent(2.2, 1, 500.0)]
    result = whole_reply_spoken(ctx(*cut, STOP))
    assert result.ok and "cleared" in result.message, result.message


def test_a_reply_cut_by_a_hangup_a_clear_or_the_caller_talking_passes_saying_why():
    first = [llm(0, 1.0, "가나"), tts(0, 1.1, "네, 잘 들었습니다.", 1.0), sent(1.2, 0, 1000.0)]
    hung_up = whole_reply_spoken(ctx(*first, Stop(1.5, how="stop")))
    assert hung_up.ok and "hung up" in hung_up.message
    cleared = whole_reply_spoken(ctx(*first, Clear(1.3), STOP))
    assert cleared.ok and "cleared" in cleared.message
    talked = whole_reply_spoken(ctx(*first, SpeechStart(1.105, utterance=1, text="x"), STOP))
    assert talked.ok and "spoke" in talked.message
    failed = whole_reply_spoken(ctx(llm(0, 1.0, "가나"), tts(0, 1.1, "네, 잘 들었습니다.", 1.0, status=500), STOP))
    assert failed.ok and "failed" in failed.message


def test_audio_mostly_unsent_fails():
    events = [llm(0, 1.0, "가나", reply="네, 잘 들었습니다."), tts(0, 1.1, "네, 잘 들었습니다.", 2.0), sent(1.2, 0, 200.0)]
    result = whole_reply_spoken(ctx(*events, STOP))
    assert not result.ok and "only 0.20 s" in result.message
    # a handler that paces its sends was still sending when the caller hung up, long after the reply was complete
    pacing = [*events, *(sent(1.2 + 0.2 * k, 0, 20.0) for k in range(1, 40))]
    assert whole_reply_spoken(ctx(*pacing, Stop(9.0, how="stop"))).ok
    assert whole_reply_spoken(ctx(*events, STOP)).skipped is False
    assert whole_reply_spoken(ctx(llm(0, 1.0, "가나"), STOP)).skipped, "no fake TTS request: another TTS"


# ------------------------------------------------------------------ in order
def test_interleaved_or_reordered_sentences_fail_replies_in_order():
    asked = [llm(0, 1.0, "가나"), tts(0, 1.1, "네, 잘 들었습니다."), tts(1, 1.1, "더 도와드릴까요?")]
    assert replies_in_order(ctx(*asked, sent(1.2, 0), sent(1.3, 0), sent(1.4, 1), sent(1.5, 1))).ok
    interleaved = replies_in_order(ctx(*asked, sent(1.2, 0), sent(1.3, 1), sent(1.4, 0), sent(1.5, 1)))
    assert not interleaved.ok and "interleaved" in interleaved.message and interleaved.at == 1.4
    swapped = replies_in_order(ctx(*asked, sent(1.2, 1), sent(1.3, 0)))
    assert not swapped.ok and "comes later in the same reply" in swapped.message
    # sentences that begin alike (the fuzzer's replies): each is placed at its own sentence, in the order asked
    alike = "w0 답변 1번. 네 w0 w1 답변 2번. 네 w0 w1 답변 3번."
    chunks_ = [llm(0, 1.0, "w0", reply=alike), tts(0, 1.1, "w0 답변 1번."), tts(1, 1.1, "네 w0 w1"), tts(2, 1.1, "답변 2번."),
               tts(3, 1.1, "네 w0 w1"), tts(4, 1.1, "답변 3번.")]
    assert replies_in_order(ctx(*chunks_, *(sent(1.2 + 0.1 * k, k) for k in range(5)))).ok
    # two requests of one tone in flight: which spoke the audio is a guess, and no order is judged on it
    same = [tts(0, 1.1, "네, 잘 들었습니다.", tone_hz=600.0), tts(1, 1.1, "더 도와드릴까요?", tone_hz=630.0),
            tts(2, 1.15, "네, 잘 들었습니다.", tone_hz=600.0)]
    assert replies_in_order(ctx(*asked[:1], *same, sent(1.2, 0), sent(1.3, 1), sent(1.4, 0))).ok


# ------------------------------------------------------------------ the LLM is told the conversation
def test_each_request_carries_the_earlier_turns():
    said = [tts(0, 1.1, "네, 잘 들었습니다."), tts(1, 3.1, "네, 잘 들었습니다.")]
    first = llm(0, 1.0, "가나")
    told = llm(1, 3.0, "다라", told=[("user", "가나"), ("assistant", REPLY)])
    assert llm_told_conversation(ctx(first, told, *said, STOP)).ok
    forgot = llm_told_conversation(ctx(first, llm(1, 3.0, "다라"), *said, STOP))
    assert not forgot.ok and "does not carry what the caller said in turn 1 ('가나')" in forgot.message
    no_reply = llm_told_conversation(ctx(first, llm(1, 3.0, "다라", told=[("user", "가나")]), *said, STOP))
    assert not no_reply.ok and "reply of turn 1" in no_reply.message
    cleared = ctx(first, llm(1, 3.0, "다라", told=[("user", "가나")]), *said, Clear(2.0), STOP)
    assert llm_told_conversation(cleared).ok, "a reply cut by a barge-in may be dropped"
    late_clear = ctx(first, llm(1, 3.0, "다라", told=[("user", "가나")]), *said, Clear(3.01), STOP)
    assert llm_told_conversation(late_clear).ok, "a handler whose threads race clears just after asking anew"
    let_go = [tts(0, 1.1, "네, 잘 들었습니다.", abandoned=True), tts(1, 3.1, "네, 잘 들었습니다.")]
    assert llm_told_conversation(ctx(first, llm(1, 3.0, "다라", told=[("user", "가나")]), *let_go, STOP)).ok
    stateless = ctx(first, llm(1, 3.0, "다라"), *said, STOP, expect={"llm_history": False})
    assert llm_told_conversation(stateless).skipped
    assert llm_told_conversation(ctx(first, *said, STOP)).skipped


def test_a_call_never_gets_a_tone_its_last_nine_requests_had_though_calls_interleave():
    from harness.fakes.tts import FakeTts, tone_for

    alone = FakeTts()
    assert [alone._tone("") for _ in range(12)] == [tone_for(i) for i in range(12)], "one call: the tones in turn"
    fake, given = FakeTts(), {"a": [], "b": [], "c": []}
    for lane in "abcabbbcaaaaaaaaaaacb":  # requests of three calls at once, in an uneven order
        given[lane].append(fake._tone(lane))
    for tones in given.values():
        assert all(len(set(tones[max(0, k - 9): k + 1])) == len(tones[max(0, k - 9): k + 1]) for k in range(len(tones)))


def test_a_tone_two_requests_share_is_given_to_them_in_turn():
    from harness.judge.timeline import Speakers

    # requests 0 and 10 speak tone 600 and were both asked before any audio was sent; 5 speaks 750 between them
    speakers = Speakers({600.0: [(0.0, 0), (0.1, 10)], 750.0: [(0.05, 5)]}, {0: 300.0, 5: 200.0, 10: 300.0},
                        {0: 300.0, 5: 200.0, 10: 300.0})
    heard = [(600.0, 100.0)] * 3 + [(750.0, 100.0)] * 2 + [(600.0, 100.0)] * 3
    owners = [speakers.speaker(tone, 1.0 + 0.01 * k, ms) for k, (tone, ms) in enumerate(heard)]
    assert owners == [0, 0, 0, 5, 5, 10, 10, 10], "each in turn, as a handler plays them"
    assert speakers.speaker(600.0, 2.0, 100.0) == 10, "past its length: still the one playing (a repeat is its)"
    assert speakers.speaker(600.0, -1.0, 100.0) is None, "audio before any request of its tone: no speaker"
    tail = Speakers({600.0: [(0.0, 0), (0.1, 10)]}, {0: 300.0, 10: 300.0}, {0: 300.0, 10: 300.0})
    assert [tail.speaker(600.0, 1.0, ms) for ms in (250.0, 40.0)] == [0, 0], "its own tail, not the next one's start"
    # a sentence dropped half-way without a clear: the next audio of its tone, after another's, is the later request's
    dropped = Speakers({600.0: [(0.0, 0), (0.1, 10)], 750.0: [(0.05, 5)]}, {0: 300.0, 5: 100.0, 10: 300.0},
                       {0: 300.0, 5: 100.0, 10: 300.0})
    heard = [(600.0, 100.0), (750.0, 100.0), (600.0, 100.0)]
    assert [dropped.speaker(tone, 1.0 + 0.01 * k, ms) for k, (tone, ms) in enumerate(heard)] == [0, 5, 10]
    # a sentence with silences in it (the untoned audio between words is no one's): its later request of the
    # same tone, asked after it had stopped, keeps what comes past its own length (a fuzzed FastAPI call, call 16)
    gaps = Speakers({600.0: [(0.0, 0), (0.5, 10)], 750.0: [(0.05, 5)]}, {0: 1000.0, 5: 100.0, 10: 200.0},
                    {0: 1000.0, 5: 100.0, 10: 200.0})
    heard = [(600.0, 100.0), (600.0, 100.0), (750.0, 100.0), (600.0, 100.0), (600.0, 100.0), (600.0, 100.0)]
    assert [gaps.speaker(tone, 1.0 + 0.01 * k, ms) for k, (tone, ms) in enumerate(heard)] == [0, 0, 5, 10, 10, 10]
    # the last sliver of request 5's audio, read with the tone of the audio after it: request 10's, not yet asked
    sliver = Speakers({600.0: [(0.0, 0), (1.5, 10)], 750.0: [(0.05, 5)]}, {0: 100.0, 5: 300.0, 10: 200.0},
                      {0: 100.0, 5: 300.0, 10: 200.0})
    heard = [(600.0, 100.0, 1.0), (750.0, 100.0, 1.1), (750.0, 100.0, 1.2), (600.0, 5.0, 1.3), (600.0, 100.0, 1.6)]
    assert [sliver.speaker(tone, at, ms) for tone, ms, at in heard] == [0, 5, 5, 5, 10]
