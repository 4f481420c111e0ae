"""The provider cascade: providers tried in order, each behind a circuit breaker.

The cascade commits to the first provider that produces a first chunk before its deadline; a failure
before that moves on to the next provider, a failure after it is reported to the caller (the text so
far cannot be unsaid). Every request a breaker allowed ends in a verdict for it — success, failure,
or release when the caller left first (core/relay/breaker.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from core.relay.breaker import CircuitBreaker
from core.relay.providers import Provider, ProviderError, Usage, close_stream


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """A provider's health as reported."""

    name: str
    model_id: str
    is_floor: bool
    breaker: str
    healthy: bool


class Cascade:
    """Providers in order, each with its breaker."""

    def __init__(self, providers: list[Provider], *, threshold: int = 3, cooldown_s: float = 30.0) -> None:
        self.providers = providers
        self.breakers = {
            p.name: CircuitBreaker(threshold=threshold, cooldown_s=cooldown_s) for p in providers
        }
        self.served: dict[str, int] = {p.name: 0 for p in providers}
        self.failed: dict[str, int] = {p.name: 0 for p in providers}

    async def aclose(self) -> None:
        """Release the providers' connections."""
        for p in self.providers:
            aclose: Callable[[], Awaitable[None]] | None = getattr(p, "aclose", None)
            if aclose is not None:
                await aclose()

    def floor(self) -> Provider | None:
        """The open-weights floor, if configured."""
        return next((p for p in self.providers if p.is_floor), None)

    def floor_healthy(self) -> bool:
        """Whether the floor can serve now."""
        f = self.floor()
        return f is not None and f.healthy() and self.breakers[f.name].available

    def status(self) -> list[ProviderStatus]:
        """Every provider's health."""
        return [
            ProviderStatus(
                p.name,
                p.model_id,
                p.is_floor,
                self.breakers[p.name].state,
                p.healthy() and self.breakers[p.name].state != "open",
            )
            for p in self.providers
        ]

    async def open(
        self, messages: list[dict[str, str]], max_tokens: int
    ) -> tuple[Provider, str, AsyncIterator[str], Usage]:
        """The first provider that yields a first chunk: (provider, first chunk, the rest, usage)."""
        errors = []
        for p in self.providers:
            breaker = self.breakers[p.name]
            if not p.healthy() or not breaker.allow():
                errors.append(f"{p.name}: unavailable")
                continue
            usage = Usage()
            it = p.stream(messages, max_tokens, usage)
            try:
                first = await anext(it)
            except (ProviderError, StopAsyncIteration) as exc:
                breaker.failure()
                self.failed[p.name] += 1
                errors.append(str(exc) or f"{p.name}: empty answer")
                await close_stream(it)
                continue
            except BaseException:  # the caller left while the provider was starting
                breaker.release()
                await close_stream(it)
                raise
            return p, first, self._watch(p, it), usage
        raise ProviderError("; ".join(errors) or "no provider configured")

    def _watch(self, p: Provider, it: AsyncIterator[str]) -> AsyncIterator[str]:
        return _Watched(self, p.name, it)


class _Watched:
    """The rest of a provider's stream, reporting to its breaker exactly once: success at its end,
    failure on a ProviderError, release when it is closed (or cancelled) before either."""

    def __init__(self, cascade: Cascade, name: str, it: AsyncIterator[str]) -> None:
        self._cascade = cascade
        self._name = name
        self._it = it
        self._reported = False

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> str:
        try:
            return await anext(self._it)
        except StopAsyncIteration:
            self._report("served")
            raise
        except ProviderError:
            self._report("failed")
            raise
        except BaseException:
            self._report("")
            raise

    def _report(self, outcome: str) -> None:
        if self._reported:
            return
        self._reported = True
        breaker = self._cascade.breakers[self._name]
        if outcome == "served":
            breaker.success()
            self._cascade.served[self._name] += 1
        elif outcome == "failed":
            breaker.failure()
            self._cascade.failed[self._name] += 1
        else:
            breaker.release()

    async def aclose(self) -> None:
        """Stop the provider; without a verdict yet, free the breaker's probe slot."""
        self._report("")
        await close_stream(self._it)
