"""The OpenAI-compatible chat backend: ``POST {upstream}/v1/chat/completions`` with ``stream: true``.

vLLM, llama.cpp's server, Ollama's ``/v1`` and TGI's Messages API all speak it. Each
``choices[0].delta.content`` piece of the SSE stream is emitted as one token as it arrives;
``[DONE]`` or a ``finish_reason`` ends the answer. A stream that stops before either is an error
(retryable), never a short answer passed off as complete.

Continuation: a job resumed after another worker was lost carries the text already delivered
(``prefix``). It is sent as a final ``{"role": "assistant", "content": prefix}`` message so the
model continues it. Servers differ here: llama.cpp and Ollama continue a trailing assistant
message ("native"); vLLM continues it only with its ``continue_final_message`` option, which the
backend sets ("vllm"); hosted OpenAI and TGI treat it as a finished turn and start over ("none"). The
agent tells the core which: only a backend that continues seamlessly is given such a job, so a caller
never sees an answer start over in the middle.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from worker_agent.backends import BackendError, ChatRequest, Emit

CONTINUATION = ("none", "native", "vllm")
"""How a model server continues a partial answer (a trailing assistant message)."""
FINISH_TAIL_S = 2.0

"""After a ``finish_reason`` or ``[DONE]``, how long to wait for the end of the body (reading it to its end
hands the connection back to the pool; a response left unread closes it)."""
ERROR_BODY_CHARS = 300


def chat_completions_url(upstream: str) -> str:
    """``…/v1/chat/completions`` for an upstream given with or without its trailing ``/v1``."""
    base = upstream.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class OpenAIBackend:
    """Streams chat completions from one OpenAI-compatible server over a keep-alive connection pool."""

    def __init__(
        self,
        *,
        upstream: str,
        model: str,
        api_key: str = "",
        max_connections: int = 8,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 120.0,
        total_timeout_s: float = 900.0,
        continuation: str = "none",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``read_timeout_s`` bounds the wait for each chunk (a model loading or queueing counts);
        ``total_timeout_s`` bounds a whole answer. ``continuation`` says how the server continues a
        partial answer: "native" (llama.cpp, Ollama continue a trailing assistant message), "vllm"
        (asked with ``continue_final_message``), or "none" (it would start over)."""
        if continuation not in CONTINUATION:
            raise ValueError(f"continuation must be one of {', '.join(CONTINUATION)}")
        self._url = chat_completions_url(upstream)
        self._model = model
        self._continuation = continuation
        self.continues_prefix = continuation != "none"
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._total_s = total_timeout_s
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s, write=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {"model": self._model, "max_tokens": request.max_tokens, "stream": True}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if request.prefix:
            messages.append({"role": "assistant", "content": request.prefix})
            if self._continuation == "vllm":
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        body["messages"] = messages
        return body

    async def generate(self, request: ChatRequest, emit: Emit) -> str:
        """Stream one answer; BackendError (retryable for 5xx, 429, timeouts, cuts) when it fails."""
        if request.max_tokens <= 0:
            return "length"  # the job has no room left; asking the server would be refused
        content = orjson.dumps(self.body(request))
        loop = asyncio.get_running_loop()
        finish: str | None = None
        done = False
        try:
            async with asyncio.timeout(self._total_s) as deadline:

                def wait_for_the_end() -> None:
                    """The answer is finished: allow only a short tail for the rest of the body."""
                    when, tail = deadline.when(), loop.time() + FINISH_TAIL_S
                    deadline.reschedule(tail if when is None else min(when, tail))

                headers = (
                    {**self._headers, **dict(request.trace_headers)}
                    if request.trace_headers
                    else self._headers
                )
                async with self._client.stream("POST", self._url, content=content, headers=headers) as r:
                    if r.status_code != 200:
                        raise await _status_error(r)
                    # Read to the end of the body even after [DONE]: a response left unread closes its
                    # connection, so the next request would have to open a new one.
                    async for line in r.aiter_lines():
                        if done or not line.startswith("data:"):
                            continue  # blank separators, ": keep-alive" comments, event:/id: fields
                        data = line[5:].strip()
                        if data == "[DONE]":
                            done = True
                            finish = finish or "stop"
                            wait_for_the_end()
                            continue
                        piece, reason = _parse_chunk(data)
                        if piece:
                            emit((piece,))
                        if reason and finish is None:
                            finish = reason
                            wait_for_the_end()
        except TimeoutError:
            if finish is not None:
                return finish  # finished; only the tail ([DONE], the end of the body) was slow
            raise BackendError(f"the model server took longer than {self._total_s:.0f} s") from None
        except httpx.TimeoutException as exc:
            raise BackendError(f"the model server timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            if finish is not None:
                return finish
            raise BackendError(f"the model server connection failed ({type(exc).__name__}: {exc})") from exc
        if finish is not None:
            return finish
        raise BackendError("the model server's stream ended before the answer finished")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _parse_chunk(data: str) -> tuple[str, str | None]:
    """(content piece, finish reason) of one ``chat.completion.chunk``."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BackendError("the model server sent a malformed chunk") from None
    if not isinstance(chunk, dict):
        raise BackendError("the model server sent a malformed chunk")
    if "error" in chunk:
        err = chunk["error"]
        message = err.get("message") if isinstance(err, dict) else err
        raise BackendError(f"the model server failed mid-answer: {str(message)[:ERROR_BODY_CHARS]}")
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "", None  # e.g. a trailing usage-only chunk
    choice = choices[0]
    delta = choice.get("delta")
    piece = delta.get("content") if isinstance(delta, dict) else None
    reason = choice.get("finish_reason")
    return (piece if isinstance(piece, str) else ""), (reason if isinstance(reason, str) and reason else None)


async def _status_error(r: httpx.Response) -> BackendError:
    """The error for a non-200 answer: retryable for 429 and 5xx, final for other 4xx."""
    try:
        text = (await r.aread()).decode(errors="replace")[:ERROR_BODY_CHARS]
    except httpx.HTTPError:
        text = ""
    retryable = r.status_code == 429 or r.status_code >= 500
    return BackendError(
        f"the model server answered {r.status_code}: {text}".rstrip(": "), retryable=retryable
    )
