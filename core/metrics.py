"""The core's Prometheus metrics, read from the figures the core already keeps, when scraped.

Nothing here runs on a request's path: the job board counts outcomes and tokens, the histograms are
observed where a job is handed out or starts answering and where the store commits, the interceptor
counts refusals, the breakers hold their state. The collector turns those into metric families on
each scrape (served by ``ashao_common.metrics.MetricsServer`` at ``metrics_addr``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ashao_common.metrics import Histogram, process_registry
from core.economics import TIERS_BY_PRIORITY
from core.grpc.status import ErrorCounts
from core.jobs.stats import JobsSnapshot
from core.jobs.system import JobSystem
from core.relay.cascade import Cascade
from core.relay.vitals import LoopLag
from core.store import Store

BREAKER_STATES = ("closed", "half_open", "open")


class CoreCollector(Collector):
    """Every figure of one core."""

    def __init__(
        self, *, jobs: JobSystem, store: Store, cascade: Cascade, errors: ErrorCounts, lag: LoopLag
    ) -> None:
        self._jobs = jobs
        self._store = store
        self._cascade = cascade
        self._errors = errors
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        """The metric families, as they stand now."""
        snap = self._jobs.snapshot()
        yield from self._queue(snap)
        yield from self._jobs_and_tokens(snap)
        yield from self._workers(snap)
        yield from self._store_figures()
        yield from self._relay()
        errors = CounterMetricFamily(
            "ashao_grpc_errors", "Calls refused, by method and gRPC status code.", labels=["method", "code"]
        )
        for (method, code), n in sorted(self._errors.counts.items()):
            errors.add_metric([method, code], n)
        yield errors
        yield GaugeMetricFamily(
            "ashao_event_loop_lag_seconds",
            "How late the core's event loop ran its last 100 ms timer.",
            value=self._lag.lag_ms / 1000,
        )

    def _queue(self, snap: JobsSnapshot) -> Iterator[Metric]:
        board = self._jobs.board
        depth = GaugeMetricFamily("ashao_queue_depth", "Jobs waiting for a worker, by tier.", labels=["tier"])
        for tier in TIERS_BY_PRIORITY:
            depth.add_metric([tier], board.queue.depth(tier))
        yield depth
        yield GaugeMetricFamily(
            "ashao_queue_oldest_wait_seconds",
            "How long the longest-waiting queued job has waited.",
            value=snap.oldest_wait_s,
        )
        yield board.dispatch_seconds.family(
            "ashao_dispatch_latency_seconds",
            "Queue wait of each hand-out: queued (or queued again after a lost attempt) -> given to a worker.",
        )
        yield board.first_token_seconds.family(
            "ashao_time_to_first_token_seconds",
            "A job's admission -> its first token at the core.",
        )

    def _jobs_and_tokens(self, snap: JobsSnapshot) -> Iterator[Metric]:
        board = self._jobs.board
        ended = CounterMetricFamily(
            "ashao_jobs", "Jobs ended since the core started, by outcome.", labels=["outcome"]
        )
        for state, n in board.ended_by_state.items():
            if state.terminal:
                ended.add_metric([state.value], n)
        yield ended
        yield GaugeMetricFamily("ashao_jobs_live", "Jobs queued or running on this core.", value=len(board))
        yield GaugeMetricFamily(
            "ashao_jobs_streaming", "Jobs whose answer is streaming now.", value=snap.jobs_streaming
        )
        yield CounterMetricFamily(
            "ashao_tokens", "Tokens relayed from workers since the core started.", value=board.meter.total
        )
        yield GaugeMetricFamily(
            "ashao_tokens_per_second",
            "Tokens relayed per second over the last 5 s.",
            value=snap.tokens_per_sec,
        )
        yield GaugeMetricFamily(
            "ashao_writes_pending",
            "Job writes submitted and not yet durable.",
            value=self._jobs.settler.pending,
        )

    def _workers(self, snap: JobsSnapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ashao_workers_connected", "Workers holding a stream to this core.", value=snap.live_workers
        )
        yield GaugeMetricFamily("ashao_worker_slots", "Slots of the connected workers.", value=snap.slots)
        yield GaugeMetricFamily(
            "ashao_worker_slots_busy", "Slots of the connected workers running a job.", value=snap.busy_slots
        )

    def _store_figures(self) -> Iterator[Metric]:
        store = self._store
        yield CounterMetricFamily("ashao_store_commits", "Group commits made.", value=store.batches)
        statements = getattr(store, "statements", None)
        if isinstance(statements, int):
            yield CounterMetricFamily(
                "ashao_store_statements", "Statements written in group commits.", value=statements
            )
        commits = getattr(store, "commit_seconds", None)
        if isinstance(commits, Histogram):
            yield commits.family("ashao_store_commit_seconds", "How long each group commit took.")

    def _relay(self) -> Iterator[Metric]:
        cascade = self._cascade
        state = GaugeMetricFamily(
            "ashao_relay_breaker_state",
            "Circuit breaker of each provider of the relay cascade: 1 for its current state.",
            labels=["provider", "state"],
        )
        requests = CounterMetricFamily(
            "ashao_relay_provider_requests",
            "Relay answers by provider and outcome (served, or failed before or during the answer).",
            labels=["provider", "outcome"],
        )
        for name, breaker in cascade.breakers.items():
            now = breaker.state
            for s in BREAKER_STATES:
                state.add_metric([name, s], 1.0 if s == now else 0.0)
            requests.add_metric([name, "served"], cascade.served[name])
            requests.add_metric([name, "failed"], cascade.failed[name])
        yield state
        yield requests


def core_registry(collector: CoreCollector) -> CollectorRegistry:
    """The registry a core's metrics listener serves: the process's figures and the core's."""
    registry = process_registry()
    registry.register(collector)
    return registry
