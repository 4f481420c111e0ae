"""Circuit breakers: consecutive failures open one; after its cooldown one probe may close it.

A breaker is ``closed`` (requests pass) until ``threshold`` consecutive failures (timeouts count)
open it. After ``cooldown_s`` it is ``half_open``: exactly one request, the probe, may pass. The
probe's success closes the breaker, its failure opens it again for another cooldown. A probe that
ends without a verdict (its caller left while it waited, or the stream was closed early) releases
the probe slot, so the next request probes instead; otherwise the breaker would stay half-open and
refuse a healthy provider for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """One provider's breaker."""

    def __init__(
        self, *, threshold: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False
        self._clock = clock

    @property
    def state(self) -> str:
        """ "closed", "open" or "half_open"."""
        if self.failures < self.threshold:
            return "closed"
        return "half_open" if self._clock() - self.opened_at >= self.cooldown_s else "open"

    @property
    def available(self) -> bool:
        """Whether a request could pass now (closed, or half-open with the probe slot free)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def allow(self) -> bool:
        """Whether a request may go to the provider now; a half-open breaker lets one probe through.

        Every allowed request must end in exactly one of ``success()``, ``failure()`` or ``release()``.
        """
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        """Close."""
        self.failures = 0
        self._probing = False

    def failure(self) -> None:
        """Count a failure; open (again) at the threshold."""
        self._probing = False
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self._clock()

    def release(self) -> None:
        """An allowed request ended without telling whether the provider works: free the probe slot."""
        self._probing = False
