"""Operator commands that talk to a running core with the operator token from its data directory:
``ashao credits grant``, ``ashao workers join-token | list | revoke``.

Each action's options come from a settings class (ashao_cli.config), so each is a flag and an
environment variable, and ``--help`` shows its default and its variable, as for every ashao program.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.protobuf.message import Message

from ashao.v1 import account_pb2, account_pb2_grpc, operator_pb2, operator_pb2_grpc
from ashao_cli.config import (
    CoreAccess,
    GrantSettings,
    JoinTokenSettings,
    ListWorkersSettings,
    RevokeSettings,
)
from ashao_common.settings import load_settings

Metadata = tuple[tuple[str, str], ...]


def operator_token(data_dir: Path) -> str:
    """The operator token the core keeps in ``<data_dir>/operator.token``."""
    return (data_dir / "operator.token").read_text().strip()


def operator_metadata(data_dir: Path) -> Metadata:
    """Call metadata carrying the operator token of the core whose data is in ``data_dir``."""
    return (("authorization", f"Bearer {operator_token(data_dir)}"),)


def issue_join_token(addr: str, data_dir: Path, *, label: str, uses: int = 1, ttl_s: int = 0) -> str:
    """A new join token from the core at ``addr`` (for ``ashao up``'s own workers). A blocking call, so
    it may be made from code that runs an event loop of its own."""
    with grpc.insecure_channel(addr) as channel:
        r = operator_pb2_grpc.OperatorServiceStub(channel).IssueJoinToken(
            operator_pb2.IssueJoinTokenRequest(label=label, uses=uses, ttl_s=ttl_s),
            metadata=operator_metadata(data_dir),
            timeout=10,
            wait_for_ready=True,
        )
    return r.join_token


@dataclass(frozen=True, slots=True)
class Action:
    """One action of an operator command: its settings, its one-line help, and what it does (given the
    settings, a channel to the core and the operator's metadata; returns what to print)."""

    settings: type[CoreAccess]
    help: str
    run: Callable[[Any, grpc.Channel, Metadata], str]


def _grant(s: GrantSettings, channel: grpc.Channel, md: Metadata) -> str:
    r = account_pb2_grpc.AccountServiceStub(channel).GrantCredits(
        account_pb2.GrantCreditsRequest(user=s.user, amount=s.amount, memo=s.memo),
        metadata=md,
        timeout=s.timeout_s,
    )
    return f"granted {s.amount} credits to {r.user_id}; balance now {r.credits}"


def _join_token(s: JoinTokenSettings, channel: grpc.Channel, md: Metadata) -> str:
    t = operator_pb2_grpc.OperatorServiceStub(channel).IssueJoinToken(
        operator_pb2.IssueJoinTokenRequest(label=s.label, uses=s.uses, ttl_s=s.ttl_s),
        metadata=md,
        timeout=s.timeout_s,
    )
    return f"{t.join_token}\n(id {t.id}; start a worker with --join-token, or ASHAO_WORKER_JOIN_TOKEN)"


def workers_table(workers: list[operator_pb2.WorkerEntry]) -> str:
    """The workers as a table: trusted/claimed slots, jobs running, measured speeds, standing, state."""
    lines = [
        f"{'worker':26} {'name':16} {'tiers':26} {'slots':>9} {'running':>7} {'tok/s':>8} "
        f"{'answer tok/s':>12} {'done':>6} {'lost':>5}  state"
    ]
    for w in workers:
        state = (
            "revoked"
            if w.revoked
            else "offline"
            if not w.connected
            else "draining"
            if w.draining
            else "connected"
        )
        tiers = ",".join(w.tiers)
        lines.append(
            f"{w.worker_id:26} {w.name[:16]:16} {tiers[:26]:26} {w.trusted_slots:>4}/{w.slots:<4} "
            f"{w.running:>7} {w.tokens_per_sec:>8.1f} {w.answer_tokens_per_sec:>12.1f} {w.delivered:>6} "
            f"{w.failed:>5}  {state}{'  owner ' + w.owner_address if w.owner_address else ''}"
        )
    return "\n".join(lines)


def as_dict(message: Message) -> dict[str, Any]:
    """A response as JSON-ready data: every field, by its proto name; numbers stay numbers (the proto
    JSON mapping would write 64-bit integers as strings), enums are their names."""

    def value(field: Any, v: Any) -> Any:
        if field.message_type is not None:
            return as_dict(v)
        if field.enum_type is not None:
            return field.enum_type.values_by_number[v].name
        return v

    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        v = getattr(message, field.name)
        out[field.name] = [value(field, x) for x in v] if field.is_repeated else value(field, v)
    return out


def _list(s: ListWorkersSettings, channel: grpc.Channel, md: Metadata) -> str:
    listed = operator_pb2_grpc.OperatorServiceStub(channel).ListWorkers(
        operator_pb2.ListWorkersRequest(), metadata=md, timeout=s.timeout_s
    )
    if s.as_json:
        return orjson.dumps(as_dict(listed)["workers"], option=orjson.OPT_INDENT_2).decode()
    return workers_table(list(listed.workers))


def _revoke(s: RevokeSettings, channel: grpc.Channel, md: Metadata) -> str:
    operator_pb2_grpc.OperatorServiceStub(channel).RevokeWorker(
        operator_pb2.RevokeWorkerRequest(worker_id=s.worker_id), metadata=md, timeout=s.timeout_s
    )
    return f"revoked {s.worker_id}"


CREDITS = {"grant": Action(GrantSettings, "mint credits to a user (by id usr_… or wallet address)", _grant)}
WORKERS = {
    "join-token": Action(JoinTokenSettings, "issue a join token a worker registers with", _join_token),
    "list": Action(ListWorkersSettings, "every registered worker, with its slots, speed and state", _list),
    "revoke": Action(
        RevokeSettings, "revoke a worker: its token stops working, its jobs go to others", _revoke
    ),
}


def _command(prog: str, about: str, actions: dict[str, Action], argv: list[str]) -> int:
    """Run ``prog ACTION [options]``; with no action, or ``--help``, list the actions."""
    listing = f"usage: {prog} ACTION [options]\n\n{about}\n\nactions:\n" + "\n".join(
        f"  {name:12}{a.help}" for name, a in actions.items()
    )
    listing += f"\n\n{prog} ACTION --help shows the options of ACTION."
    if not argv or argv[0] in ("-h", "--help"):
        print(listing)
        return 0 if argv else 2
    action = actions.get(argv[0])
    if action is None:
        print(f"{prog}: unknown action {argv[0]!r}\n\n{listing}", file=sys.stderr)
        return 2
    settings = load_settings(action.settings, argv[1:], prog=f"{prog} {argv[0]}", description=action.help)
    try:
        md = operator_metadata(settings.data_dir)
    except OSError as exc:
        print(f"{prog}: cannot read the operator token: {exc}", file=sys.stderr)
        return 2
    try:
        with grpc.insecure_channel(settings.core) as channel:
            print(action.run(settings, channel, md))
    except grpc.RpcError as err:
        print(f"{prog}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    return 0


def credits(argv: list[str]) -> int:
    """``ashao credits grant --user USER --amount N [--memo TEXT]``."""
    return _command("ashao credits", "Manage credits (operator).", CREDITS, argv)


def workers(argv: list[str]) -> int:
    """``ashao workers join-token | list | revoke WORKER_ID``."""
    return _command("ashao workers", "Who may join as a worker (operator).", WORKERS, argv)
