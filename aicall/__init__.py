"""aicall: the call handler the report describes (Twilio Media Streams -> RTZR streaming STT -> LLM -> TTS ->
back to Twilio), built so its four recorded failures cannot happen. ``aicall serve`` runs it (``aicall.app``)."""
