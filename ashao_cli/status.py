"""``ashao status``: the network at a glance, read from a running core.

The figures come from ``NetworkService.GetStats`` (public: totals, and per tier what waits, what runs
and who can take it) and, with the operator token of the core's data directory, from
``OperatorService.ListWorkers`` (each worker's slots, speeds and state). Without the token the workers
are left out and the command says so.
"""

from __future__ import annotations

import sys

import grpc
import orjson

from ashao.v1 import network_pb2, network_pb2_grpc, operator_pb2, operator_pb2_grpc
from ashao_cli.config import StatusSettings
from ashao_cli.operator import as_dict, operator_metadata, workers_table
from ashao_common.settings import load_settings


def network_text(addr: str, s: network_pb2.GetStatsResponse) -> str:
    """The totals and the per-tier table."""
    lines = [
        f"core {addr}: {s.connected_workers} worker(s) connected ({s.active_workers} active), "
        f"slots {s.busy_slots}/{s.slots} busy, {s.tokens_per_sec:.1f} tokens/s",
        f"queue {s.queue_depth} (oldest {s.oldest_wait_s:.1f} s), {s.jobs_streaming} answer(s) streaming, "
        f"{s.followers} follower(s), {s.jobs_completed} job(s) completed",
        "",
        f"{'tier':8} {'queued':>7} {'running':>8} {'oldest':>8} {'workers':>8} {'free slots':>11}",
    ]
    for t in s.tiers:
        lines.append(
            f"{t.tier:8} {t.queued:>7} {t.running:>8} {t.oldest_wait_s:>7.1f}s {t.workers:>8} {t.free_slots:>11}"
        )
    return "\n".join(lines)


TOTALS = (
    "connected_workers",
    "active_workers",
    "slots",
    "busy_slots",
    "queue_depth",
    "jobs_streaming",
    "followers",
    "jobs_completed",
    "tokens_per_sec",
)
"""The figures of GetStats that add up across the cores of a cluster (each core counts its own)."""


def cluster_totals(stats: list[network_pb2.GetStatsResponse]) -> dict[str, float]:
    """The cluster's totals: each of ``TOTALS`` summed over its cores."""
    return {name: sum(getattr(s, name) for s in stats) for name in TOTALS}


def cluster_text(cores: int, reachable: int, t: dict[str, float]) -> str:
    """One line of totals for a cluster."""
    return (
        f"cluster: {reachable} of {cores} core(s) answering, {t['connected_workers']:.0f} worker(s) connected, "
        f"slots {t['busy_slots']:.0f}/{t['slots']:.0f} busy, {t['tokens_per_sec']:.1f} tokens/s, "
        f"queue {t['queue_depth']:.0f}, {t['jobs_streaming']:.0f} answer(s) streaming, "
        f"{t['followers']:.0f} follower(s), {t['jobs_completed']:.0f} job(s) completed"
    )


def status(argv: list[str]) -> int:
    """Print the network's status, each core's with several; 1 if a core cannot be reached."""
    settings = load_settings(
        StatusSettings,
        argv,
        prog="ashao status",
        description="The network at a glance: workers, slots, tokens/s, queue depth per tier, streams.",
    )
    try:
        md = operator_metadata(settings.data_dir)
    except OSError:
        md = None
    stats: dict[str, network_pb2.GetStatsResponse] = {}
    errors: dict[str, str] = {}
    workers: list[operator_pb2.WorkerEntry] | None = None
    note = "" if md else f"workers: not shown (no operator token in {settings.data_dir}; see --data-dir)"
    for addr in settings.cores:
        with grpc.insecure_channel(addr) as channel:
            try:
                stats[addr] = network_pb2_grpc.NetworkServiceStub(channel).GetStats(
                    network_pb2.GetStatsRequest(), timeout=settings.timeout_s
                )
            except grpc.RpcError as err:
                errors[addr] = f"{err.code().name}: {err.details()}"
                print(f"ashao status: cannot read {addr}: {errors[addr]}", file=sys.stderr)
                continue
            if md is None or workers is not None or note:
                continue
            try:  # the workers are the store's: any core of a cluster lists them all
                listed = operator_pb2_grpc.OperatorServiceStub(channel).ListWorkers(
                    operator_pb2.ListWorkersRequest(), metadata=md, timeout=settings.timeout_s
                )
                workers = list(listed.workers)
            except grpc.RpcError as err:
                note = f"workers: not shown ({err.code().name}: {err.details()})"
    if not stats:
        return 1
    several = len(settings.cores) > 1
    if settings.as_json:

        def core_doc(addr: str) -> dict[str, object]:
            if addr in errors:
                return {"core": addr, "error": errors[addr]}
            doc = as_dict(stats[addr])
            return {
                "core": addr,
                "network": {k: v for k, v in doc.items() if k != "tiers"},
                "tiers": doc["tiers"],
            }

        listed_workers = None if workers is None else [as_dict(w) for w in workers]
        if several:
            document: dict[str, object] = {
                "cores": [core_doc(a) for a in settings.cores],
                "cluster": cluster_totals(list(stats.values())),
                "workers": listed_workers,
            }
        else:
            document = {**core_doc(settings.cores[0]), "workers": listed_workers}
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        sections = [
            network_text(a, stats[a]) if a in stats else f"core {a}: not answering ({errors[a]})"
            for a in settings.cores
        ]
        if several:
            sections.append(
                cluster_text(len(settings.cores), len(stats), cluster_totals(list(stats.values())))
            )
        if workers is not None:
            sections.append(workers_table(workers))
        print("\n\n".join(sections))
    if note:
        print(note, file=sys.stderr)
    return 1 if errors else 0
