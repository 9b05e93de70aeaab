"""The fakes a handler under test talks to: Twilio's side of the call (``twilio_*``), an OpenAI-compatible
LLM (``llm``) and TTS (``tts``, which also speaks Naver CLOVA Voice's dialect: ``clova_tts``), each journaled
(``journal``); ``services`` runs them with fakertzr.

May import: ``harness.fixture``, ``harness.errors``, fakertzr, callaudio; nothing else of the harness.
"""
