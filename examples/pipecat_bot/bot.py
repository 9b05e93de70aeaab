"""A stock pipecat telephony bot (a third-party handler: it imports nothing from this project).

Built as pipecat's and pipecat-rtzr's docs show: pipecat's development runner serves Twilio Media
Streams at ``/ws``; ``TwilioFrameSerializer``; Silero VAD on the user aggregator, with pipecat's
timer-based end of turn (``SpeechTimeoutUserTurnStopStrategy``);
``RTZRSTTService`` (pipecat-rtzr) -> ``OpenAILLMService`` -> ``OpenAITTSService`` (told its 24 kHz rate). The only
changes for the harness are the base URLs taken from the environment (``RTZR_API_BASE``,
``OPENAI_BASE_URL``, ``TTS_BASE_URL``) and no Twilio REST hang-up (no Twilio account here).

    python bot.py --port 7860          # stream URL: ws://localhost:7860/ws
"""

import os

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat_rtzr import RTZRSTTService
from pipecat_rtzr.auth import DEFAULT_API_BASE


async def run_bot(transport, handle_sigint: bool) -> None:
    stt = RTZRSTTService(api_base=os.environ.get("RTZR_API_BASE", DEFAULT_API_BASE))
    llm = OpenAILLMService(api_key=os.environ["OPENAI_API_KEY"], base_url=os.environ.get("OPENAI_BASE_URL"))
    # OpenAI's TTS speaks only 24 kHz: said so, pipecat resamples it to the pipeline's 8 kHz; left to the pipeline's
    # rate, pipecat labels the 24 kHz audio 8 kHz and the caller hears it three times too slow (bot_audio_rate)
    tts = OpenAITTSService(api_key=os.environ["OPENAI_API_KEY"], base_url=os.environ.get("TTS_BASE_URL"), voice="alloy",
                           sample_rate=24000)

    context = LLMContext([{"role": "system", "content": "간결하게 한국어로 답하세요."}])
    # pipecat's timer-based end of turn (silence after the VAD's stop, and a transcript) instead of its default
    # smart-turn model: on this caller's first utterance the model's verdict flips with where the VAD cut the audio
    # (probability 0.34 ending 100-150 ms after the last word, 0.79+ from 200 ms), so the call went one way or the
    # other from run to run. 0.3 s of silence, not the strategy's 0.6: with 0.6 the bot's first reply in `barge-in`
    # began 0.1-0.2 s after the caller started talking over it, and whether any of it played before the bot stopped
    # for them was luck too
    turns = UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)])
    aggregators = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(
        vad_analyzer=SileroVADAnalyzer(), user_turn_strategies=turns))
    pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm, tts, transport.output(), aggregators.assistant()])
    task = PipelineTask(pipeline, params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await task.cancel()

    await PipelineRunner(handle_sigint=handle_sigint).run(task)


async def bot(runner_args: RunnerArguments) -> None:
    """The pipecat runner's entry point: one call per WebSocket."""
    _, call_data = await parse_telephony_websocket(runner_args.websocket)
    serializer = TwilioFrameSerializer(stream_sid=call_data["stream_id"], call_sid=call_data["call_id"],
                                       params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    transport = FastAPIWebsocketTransport(
        websocket=runner_args.websocket,
        params=FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False,
                                      serializer=serializer))
    await run_bot(transport, runner_args.handle_sigint)


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
