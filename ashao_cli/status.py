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


def status(argv: list[str]) -> int:
    """Print the network's status; 1 if the core cannot be reached."""
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
    workers: list[operator_pb2.WorkerEntry] | None = None
    note = ""
    with grpc.insecure_channel(settings.core) as channel:
        try:
            stats = network_pb2_grpc.NetworkServiceStub(channel).GetStats(
                network_pb2.GetStatsRequest(), timeout=settings.timeout_s
            )
        except grpc.RpcError as err:
            code = err.code().name
            print(f"ashao status: cannot read {settings.core}: {code}: {err.details()}", file=sys.stderr)
            return 1
        if md is None:
            note = f"workers: not shown (no operator token in {settings.data_dir}; see --data-dir)"
        else:
            try:
                listed = operator_pb2_grpc.OperatorServiceStub(channel).ListWorkers(
                    operator_pb2.ListWorkersRequest(), metadata=md, timeout=settings.timeout_s
                )
                workers = list(listed.workers)
            except grpc.RpcError as err:
                note = f"workers: not shown ({err.code().name}: {err.details()})"
    if settings.as_json:
        document = {
            "core": settings.core,
            "network": {k: v for k, v in as_dict(stats).items() if k != "tiers"},
            "tiers": as_dict(stats)["tiers"],
            "workers": None if workers is None else [as_dict(w) for w in workers],
        }
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        print(network_text(settings.core, stats))
        if workers is not None:
            print()
            print(workers_table(workers))
    if note:
        print(note, file=sys.stderr)
    return 0
