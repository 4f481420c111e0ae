"""The request bodies of the OpenAI-compatible API as OpenAI documents them, checked on arrival.

Unknown fields are ignored, as OpenAI ignores them; a known field of the wrong shape is 400 naming it.
Options ashao cannot honour are refused rather than silently dropped (``n`` other than 1, ``tools``).
Responses are documented by the models at the end (they are built as plain dicts on the hot path).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from facade.validation import Body, Number, Text

PositiveUInt32 = Annotated[int, Field(ge=1, le=2**32 - 1)]


def _only_one(value: int) -> int:
    if value != 1:
        raise ValueError("only 1 is supported")
    return value


One = Annotated[int, AfterValidator(_only_one)]
"""A count that ashao supports only as 1."""

_CONTENT_SCHEMA: JsonDict = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
            },
        },
        {"type": "null"},
    ]
}
_STOP_SCHEMA: JsonDict = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        {"type": "null"},
    ]
}


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


class Message(Body):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="`developer` is taken as `system`; the last message must be the user's."
    )
    content: Any = Field(
        default=None,
        description='The text, or a list of text parts (`{type: "text", text}`, joined by newlines).',
        json_schema_extra=_CONTENT_SCHEMA,
    )
    name: Text | None = Field(default=None, description="Accepted and ignored.")

    @field_validator("content", mode="plain")
    @classmethod
    def _content(cls, value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, list):
            texts = []
            for i, part in enumerate(value):
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise ValueError(f"part {i} is not a text part (only text is supported)")
                texts.append(_text(part.get("text"), f"part {i}'s text"))
            return "\n".join(texts)
        return _text(value, "it")


class StreamOptions(Body):
    """Options of a streamed answer."""

    include_usage: bool | None = Field(
        default=None, description="End the stream with a chunk carrying `usage` (and no choices)."
    )


class ChatCompletionRequest(Body):
    """A chat completion request."""

    model_config = ConfigDict(
        **Body.model_config,
        json_schema_extra={
            "examples": [
                {"model": "ashao-free", "messages": [{"role": "user", "content": "Explain ashao."}]},
                {
                    "model": "ashao-free",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": [{"type": "text", "text": "Explain ashao."}]},
                    ],
                    "max_tokens": 8,
                    "stop": ["tok5"],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ]
        },
    )

    model: Text = Field(description="A model of `GET /v1/models`: `ashao-free`, `ashao-pro`, …")
    messages: list[Message] = Field(min_length=1, description="The conversation, oldest first.")
    max_tokens: PositiveUInt32 | None = Field(
        default=None, description="Most tokens of the answer (at most the model's maximum)."
    )
    max_completion_tokens: PositiveUInt32 | None = Field(
        default=None, description="As `max_tokens` (wins when both are given)."
    )
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    stop: Any = Field(
        default=None,
        description="Up to 4 sequences that end the answer where they would appear.",
        json_schema_extra=_STOP_SCHEMA,
    )
    stream: bool | None = Field(default=False, description="Stream the answer as Server-Sent Events.")
    stream_options: StreamOptions | None = None
    n: One | None = Field(default=None, description="How many answers; only 1 is supported.")
    user: Text | None = Field(default=None, description="Accepted and ignored.")
    tools: list[Any] | None = Field(default=None, description="Not supported: must be absent or empty.")

    @field_validator("stop", mode="plain")
    @classmethod
    def _stop(cls, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return tuple(_text(v, f"item {i}") for i, v in enumerate(value))
        raise ValueError("must be a string or a list of strings")

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tools are not supported")
        return value

    @property
    def budget(self) -> int:
        """The token budget asked for (0: the model's maximum)."""
        return self.max_completion_tokens or self.max_tokens or 0

    @property
    def budget_field(self) -> str:
        """The parameter the budget came from."""
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"


class ImageRequest(Body):
    """An image generation request."""

    model_config = ConfigDict(
        **Body.model_config,
        json_schema_extra={
            "examples": [
                {"prompt": "a violet aurora over a quiet network of cities", "size": "1792x1024"},
                {"prompt": "a lighthouse", "model": "ashao-image", "response_format": "b64_json"},
            ]
        },
    )

    prompt: Text = Field(description="What to draw (at most 1,000 characters).")
    model: Text | None = Field(default=None, description="`ashao-image` (the default).")
    n: One | None = Field(default=None, description="How many images; only 1 is supported.")
    size: Text | None = Field(
        default=None,
        description="`WIDTHxHEIGHT` or `auto`: picks the aspect (square, landscape or portrait); the"
        " picture has the network's size for that aspect.",
    )
    response_format: Literal["url", "b64_json"] | None = Field(default=None, description="`url` (default).")
    style: Text | None = Field(
        default=None,
        description="`vivid` (Cinematic), `natural` (Photographic, the default) or one of ashao's styles.",
    )
    user: Text | None = Field(default=None, description="Accepted and ignored.")


# -- what the routes answer (documentation) ----------------------------------------------------------


class ChatMessageOut(BaseModel):
    """The answer."""

    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    """The one answer."""

    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    """Tokens used: the answer's as relayed; the prompt's estimated (about one per four characters)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A whole answer (`stream` false). Its `id` is the job's (`job_…`)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    """What a chunk adds: the role first, then content."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """A chunk's piece of the answer."""

    index: int
    delta: Delta
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionChunk(BaseModel):
    """One event of a streamed answer (`choices` is empty in the final usage chunk)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """A model: one tier of the network (with what it costs and allows)."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    tier: str
    kind: Literal["chat", "image"]
    credit_cost: int
    max_tokens: int


class ModelList(BaseModel):
    """Every model."""

    object: Literal["list"]
    data: list[ModelCard]


class ImageData(BaseModel):
    """One image: its URL or its bytes (base64)."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str


class ImagesResponse(BaseModel):
    """The generated images."""

    created: int
    data: list[ImageData]
