"""How long a stream's writer may hold tokens before writing them: a window that follows the load.

Every write (a gRPC message, an SSE write to a socket) costs about the same whatever it carries, so
under load tokens are worth holding a little to go out together; with few tokens flowing, holding
them only adds latency. ``Pace`` measures the tokens a writer passes on per second and sizes its
window from it: nothing up to ``floor_rate`` tokens/s, ``max_s`` from ``full_rate`` on, and in
proportion between the two. A 50 tokens/s stream's next token comes 20 ms after the last, so a
window only merges tokens once it is wider than that: the window is there to bound the writes per
second when thousands of streams run, not to batch a few.
"""

from __future__ import annotations


class Pace:
    """The window of one writer, from the rate of the tokens it wrote."""

    __slots__ = ("_count", "_since", "floor_rate", "full_rate", "max_s", "period_s", "rate", "window_s")

    def __init__(
        self, *, max_s: float, full_rate: float, floor_rate: float = 0.0, period_s: float = 0.25
    ) -> None:
        self.max_s = max_s
        self.full_rate = full_rate
        """Tokens/s at which the window reaches ``max_s``."""
        self.floor_rate = min(floor_rate, full_rate)
        """Tokens/s up to which there is no window at all."""
        self.period_s = period_s
        """How often the rate is measured again (it is smoothed over about two periods)."""
        self.rate = 0.0
        """Tokens/s, smoothed."""
        self.window_s = 0.0
        """How long the writer may hold tokens now."""
        self._count = 0
        self._since = -1.0

    def count(self, tokens: int, now: float) -> None:
        """``tokens`` were written at ``now`` (monotonic seconds)."""
        self._count += tokens
        elapsed = now - self._since
        if self._since < 0:
            self._since = now
        elif elapsed >= self.period_s:
            rate = self._count / elapsed
            # After an idle spell the rate is what it is now: the window does not linger at its old width.
            self.rate = rate if elapsed > 2 * self.period_s else 0.5 * (self.rate + rate)
            self._count = 0
            self._since = now
            span = self.full_rate - self.floor_rate
            above = self.rate - self.floor_rate
            if self.full_rate <= 0 or above <= 0:
                self.window_s = 0.0
            else:
                self.window_s = self.max_s if span <= 0 else min(self.max_s, self.max_s * above / span)
