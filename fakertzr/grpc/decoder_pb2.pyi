from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecoderRequest(_message.Message):
    __slots__ = ("streaming_config", "audio_content", "streaming_control")
    STREAMING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    STREAMING_CONTROL_FIELD_NUMBER: _ClassVar[int]
    streaming_config: DecoderConfig
    audio_content: bytes
    streaming_control: DecoderControl
    def __init__(self, streaming_config: _Optional[_Union[DecoderConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ..., streaming_control: _Optional[_Union[DecoderControl, _Mapping]] = ...) -> None: ...

class DecoderControl(_message.Message):
    __slots__ = ("command",)
    class DecoderCommand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DECODER_CMD_UNSPECIFIED: _ClassVar[DecoderControl.DecoderCommand]
        DECODER_CMD_FINALIZE: _ClassVar[DecoderControl.DecoderCommand]
    DECODER_CMD_UNSPECIFIED: DecoderControl.DecoderCommand
    DECODER_CMD_FINALIZE: DecoderControl.DecoderCommand
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: DecoderControl.DecoderCommand
    def __init__(self, command: _Optional[_Union[DecoderControl.DecoderCommand, str]] = ...) -> None: ...

class DecoderResponse(_message.Message):
    __slots__ = ("error", "results", "speech_event_type")
    class SpeechEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SPEECH_EVENT_UNSPECIFIED: _ClassVar[DecoderResponse.SpeechEventType]
        END_OF_SINGLE_UTTERANCE: _ClassVar[DecoderResponse.SpeechEventType]
        START_OF_VAD: _ClassVar[DecoderResponse.SpeechEventType]
        END_OF_VAD: _ClassVar[DecoderResponse.SpeechEventType]
    SPEECH_EVENT_UNSPECIFIED: DecoderResponse.SpeechEventType
    END_OF_SINGLE_UTTERANCE: DecoderResponse.SpeechEventType
    START_OF_VAD: DecoderResponse.SpeechEventType
    END_OF_VAD: DecoderResponse.SpeechEventType
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    error: bool
    results: _containers.RepeatedCompositeFieldContainer[StreamingRecognitionResult]
    speech_event_type: DecoderResponse.SpeechEventType
    def __init__(self, error: bool = ..., results: _Optional[_Iterable[_Union[StreamingRecognitionResult, _Mapping]]] = ..., speech_event_type: _Optional[_Union[DecoderResponse.SpeechEventType, str]] = ...) -> None: ...

class StreamingRecognitionResult(_message.Message):
    __slots__ = ("alternatives", "is_final", "stability", "duration", "start_at")
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    alternatives: _containers.RepeatedCompositeFieldContainer[SpeechRecognitionAlternative]
    is_final: bool
    stability: float
    duration: int
    start_at: int
    def __init__(self, alternatives: _Optional[_Iterable[_Union[SpeechRecognitionAlternative, _Mapping]]] = ..., is_final: bool = ..., stability: _Optional[float] = ..., duration: _Optional[int] = ..., start_at: _Optional[int] = ...) -> None: ...

class SpeechRecognitionAlternative(_message.Message):
    __slots__ = ("text", "confidence", "words")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    confidence: float
    words: _containers.RepeatedCompositeFieldContainer[WordInfo]
    def __init__(self, text: _Optional[str] = ..., confidence: _Optional[float] = ..., words: _Optional[_Iterable[_Union[WordInfo, _Mapping]]] = ...) -> None: ...

class WordInfo(_message.Message):
    __slots__ = ("start_at", "duration", "text", "confidence", "speaker_tag")
    START_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_TAG_FIELD_NUMBER: _ClassVar[int]
    start_at: int
    duration: int
    text: str
    confidence: float
    speaker_tag: int
    def __init__(self, start_at: _Optional[int] = ..., duration: _Optional[int] = ..., text: _Optional[str] = ..., confidence: _Optional[float] = ..., speaker_tag: _Optional[int] = ...) -> None: ...

class DecoderConfig(_message.Message):
    __slots__ = ("sample_rate", "encoding", "model_name", "use_itn", "use_disfluency_filter", "use_profanity_filter", "use_punctuation", "stream_config", "keywords", "language", "domain")
    class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_UNSPECIFIED: _ClassVar[DecoderConfig.AudioEncoding]
        LINEAR16: _ClassVar[DecoderConfig.AudioEncoding]
        WAV: _ClassVar[DecoderConfig.AudioEncoding]
        FLAC: _ClassVar[DecoderConfig.AudioEncoding]
        MULAW: _ClassVar[DecoderConfig.AudioEncoding]
        ALAW: _ClassVar[DecoderConfig.AudioEncoding]
        AMR: _ClassVar[DecoderConfig.AudioEncoding]
        AMR_WB: _ClassVar[DecoderConfig.AudioEncoding]
        OGG_OPUS: _ClassVar[DecoderConfig.AudioEncoding]
        OPUS: _ClassVar[DecoderConfig.AudioEncoding]
    ENCODING_UNSPECIFIED: DecoderConfig.AudioEncoding
    LINEAR16: DecoderConfig.AudioEncoding
    WAV: DecoderConfig.AudioEncoding
    FLAC: DecoderConfig.AudioEncoding
    MULAW: DecoderConfig.AudioEncoding
    ALAW: DecoderConfig.AudioEncoding
    AMR: DecoderConfig.AudioEncoding
    AMR_WB: DecoderConfig.AudioEncoding
    OGG_OPUS: DecoderConfig.AudioEncoding
    OPUS: DecoderConfig.AudioEncoding
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    USE_ITN_FIELD_NUMBER: _ClassVar[int]
    USE_DISFLUENCY_FILTER_FIELD_NUMBER: _ClassVar[int]
    USE_PROFANITY_FILTER_FIELD_NUMBER: _ClassVar[int]
    USE_PUNCTUATION_FIELD_NUMBER: _ClassVar[int]
    STREAM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    KEYWORDS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    encoding: DecoderConfig.AudioEncoding
    model_name: str
    use_itn: bool
    use_disfluency_filter: bool
    use_profanity_filter: bool
    use_punctuation: bool
    stream_config: RuntimeStreamConfig
    keywords: _containers.RepeatedScalarFieldContainer[str]
    language: str
    domain: str
    def __init__(self, sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[DecoderConfig.AudioEncoding, str]] = ..., model_name: _Optional[str] = ..., use_itn: bool = ..., use_disfluency_filter: bool = ..., use_profanity_filter: bool = ..., use_punctuation: bool = ..., stream_config: _Optional[_Union[RuntimeStreamConfig, _Mapping]] = ..., keywords: _Optional[_Iterable[str]] = ..., language: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class RuntimeStreamConfig(_message.Message):
    __slots__ = ("max_utter_duration", "epd_time")
    MAX_UTTER_DURATION_FIELD_NUMBER: _ClassVar[int]
    EPD_TIME_FIELD_NUMBER: _ClassVar[int]
    max_utter_duration: int
    epd_time: float
    def __init__(self, max_utter_duration: _Optional[int] = ..., epd_time: _Optional[float] = ...) -> None: ...
