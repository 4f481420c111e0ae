"""What a chat send asks for, decoded once from the wire and checked before anything is written.

Two shapes reach the core: the network API's (a tier, one user message, maybe a conversation to
continue) and the stateless one of OpenAI-style clients (a model name, the whole conversation, a token
budget, sampling options). Both become one ``ChatAsk``; admission turns it into a job.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import orjson

from ashao.v1 import chat_pb2
from core.config import CoreSettings
from core.economics import CHAT_TIERS, TIERS, Tier
from core.errors import InvalidArgumentError, ModelNotFoundError
from core.jobs.model import NO_SAMPLING, Sampling

ROLES = ("system", "user", "assistant")
"""The roles a message of a stateless send may have."""
MAX_STOP = 4
"""Most stop sequences one send may give."""
MAX_STOP_CHARS = 256
"""Longest stop sequence."""
MAX_TEMPERATURE = 2.0
TOKENS_PER_MESSAGE = 4
"""What the prompt estimate adds per message (roles and separators cost tokens too)."""
CHARS_PER_TOKEN = 4
"""What the prompt estimate takes a token to be, in characters (English text, on average)."""

_BY_MODEL = {t.model: t for t in TIERS.values()}


@dataclass(frozen=True, slots=True)
class ChatAsk:
    """One send: ``tier`` (or ``model``), and either ``content`` (with ``conversation_id`` to continue
    one) or the whole conversation in ``messages``."""

    tier: str = ""
    content: str = ""
    conversation_id: str = ""
    idempotency_key: str = ""
    model: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    """(role, content) pairs, oldest first, for a stateless send."""
    max_tokens: int = 0
    """0: the tier's maximum."""
    sampling: Sampling = field(default=NO_SAMPLING)

    @classmethod
    def from_proto(cls, r: chat_pb2.SendMessageRequest) -> ChatAsk:
        """The ask of a ``SendMessageRequest``."""
        return cls(
            tier=r.tier,
            content=r.content,
            conversation_id=r.conversation_id,
            idempotency_key=r.idempotency_key,
            model=r.model,
            messages=tuple((m.role, m.content) for m in r.messages),
            max_tokens=r.max_tokens,
            sampling=Sampling(r.temperature if r.HasField("temperature") else None, tuple(r.stop)),
        )

    def spec(self) -> Tier:
        """The chat tier asked for, by name or by model; NOT_FOUND (MODEL_NOT_FOUND) for an unknown model,
        INVALID_ARGUMENT for an unknown tier or one that does not chat."""
        if not self.tier and self.model:
            found = _BY_MODEL.get(self.model)
            if found is None:
                raise ModelNotFoundError(f"model: no model {self.model!r}", field="model")
            if not found.chat:
                raise InvalidArgumentError(
                    f"model: {self.model} makes images, not chat completions", field="model"
                )
            return found
        spec = TIERS.get(self.tier)
        if spec is None or not spec.chat:
            raise InvalidArgumentError(f"tier: must be one of {', '.join(CHAT_TIERS)}", field="tier")
        return spec

    def check(self, spec: Tier, settings: CoreSettings) -> None:
        """Refuse what does not fit (INVALID_ARGUMENT naming the field); nothing is written before."""
        limit = settings.max_content_chars
        if self.messages:
            if self.content or self.conversation_id:
                field_ = "content" if self.content else "conversationId"
                raise InvalidArgumentError(f"{field_}: not with messages", field=field_)
            if len(self.messages) > settings.max_history_messages:
                raise InvalidArgumentError(
                    f"messages: at most {settings.max_history_messages} messages", field="messages"
                )
            for i, (role, content) in enumerate(self.messages):
                if role not in ROLES:
                    raise InvalidArgumentError(
                        f"messages[{i}].role: must be one of {', '.join(ROLES)}", field=f"messages[{i}].role"
                    )
                if len(content) > limit:
                    raise InvalidArgumentError(
                        f"messages[{i}].content: longer than {limit} characters",
                        field=f"messages[{i}].content",
                    )
            last = len(self.messages) - 1
            if self.messages[-1][0] != "user":
                raise InvalidArgumentError(
                    f"messages[{last}].role: the last message must be the user's",
                    field=f"messages[{last}].role",
                )
            if not self.messages[-1][1].strip():
                raise InvalidArgumentError(
                    f"messages[{last}].content: must not be empty", field=f"messages[{last}].content"
                )
        else:
            if not self.content.strip():
                raise InvalidArgumentError("content: must not be empty", field="content")
            if len(self.content) > limit:
                raise InvalidArgumentError(f"content: longer than {limit} characters", field="content")
        if self.max_tokens > spec.max_tokens:
            raise InvalidArgumentError(
                f"max_tokens: at most {spec.max_tokens} for {spec.model}", field="max_tokens"
            )
        check_sampling(self.sampling)

    def budget(self, spec: Tier) -> int:
        """Most tokens the answer may have."""
        return self.max_tokens or spec.max_tokens

    @property
    def prompt_tokens(self) -> int:
        """An estimate of the prompt's size in tokens (see ``SendMessageResponse.prompt_tokens``)."""
        texts = [c for _, c in self.messages] if self.messages else [self.content]
        return sum(math.ceil(len(t) / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE for t in texts)

    def digest(self) -> str:
        """What an idempotency key is bound to: a repeat must ask for exactly the same."""
        if not self.messages and not self.max_tokens and self.sampling == NO_SAMPLING:
            # (the network API's sends keep the digest their keys were first stored with)
            return hashlib.sha256(f"{self.tier}\n{self.conversation_id}\n{self.content}".encode()).hexdigest()
        canonical = orjson.dumps(
            [
                self.tier or self.model,
                self.conversation_id,
                self.content,
                self.messages,
                self.max_tokens,
                self.sampling.temperature,
                self.sampling.stop,
            ]
        )
        return hashlib.sha256(canonical).hexdigest()


def check_sampling(sampling: Sampling) -> None:
    """INVALID_ARGUMENT naming ``temperature`` or ``stop`` when they are out of range."""
    t = sampling.temperature
    if t is not None and not (math.isfinite(t) and 0.0 <= t <= MAX_TEMPERATURE):
        raise InvalidArgumentError(f"temperature: must be from 0 to {MAX_TEMPERATURE:g}", field="temperature")
    if len(sampling.stop) > MAX_STOP:
        raise InvalidArgumentError(f"stop: at most {MAX_STOP} sequences", field="stop")
    for s in sampling.stop:
        if not s or len(s) > MAX_STOP_CHARS:
            raise InvalidArgumentError(
                f"stop: each sequence from 1 to {MAX_STOP_CHARS} characters", field="stop"
            )
