"""A job ended by someone else first (another core cancelled it while this one ran it): the end that
committed first stands; this core's later end is dropped, its money never booked, and the caller is
told what the store holds."""

from __future__ import annotations

import pytest

from ashao.v1 import account_pb2
from core.economics import SIGNUP_GRANT, TIERS
from core.money.balances import SharedBalances
from core.money.billing import Billing
from core.money.ledger import Ledger, user_account, worker_account
from tests.helpers.core import Core, collect, connect_worker

pytestmark = pytest.mark.timeout(30)


async def test_a_completion_after_another_cores_cancellation_is_dropped_unpaid(core: Core) -> None:
    user = await core.sign_in()
    me = await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=user)
    worker = await connect_worker(core, slots=1)
    job_id, _ = await core.send("hello", tier="pro", metadata=user)
    assert (await worker.assignment()).job_id == job_id
    await worker.tokens(job_id, ["an ", "answer"])
    # what another core's cancellation writes: the end, the settlement, the refund, in one unit
    cost = TIERS["pro"].credit_cost
    elsewhere = Ledger(core.app.store, SharedBalances(core.app.store))  # another core's books
    refund = Billing(elsewhere).refund(job_id=job_id, cost=cost, payer=me.user.id)
    await core.app.store.write(
        [
            ("UPDATE jobs SET state='cancelled', error=? WHERE id=?", ("cancelled on another core", job_id)),
            *refund.statements,
        ]
    )
    await worker.complete(job_id)
    events = await collect(core, job_id, metadata=user)
    assert [e[2] for e in events[:2]] == ["an ", "answer"]
    assert events[-1][1] == "error" and events[-1][2] == "CANCELLED"
    row = await core.app.store.fetchone("SELECT state, error FROM jobs WHERE id = ?", (job_id,))
    assert row == ("cancelled", "cancelled on another core")
    assert await core.app.ledger.balance(worker_account(worker.worker_id)) == 0  # not paid
    stored = SharedBalances(core.app.store)  # (this core's own projection never saw the other's refund)
    assert await stored.balance(user_account(me.user.id)) == SIGNUP_GRANT  # refunded once, charged nothing
    assert await stored.balance(worker_account(worker.worker_id)) == 0
    settlements = await core.app.store.fetchall("SELECT outcome FROM settlements WHERE job_id = ?", (job_id,))
    assert len(settlements) == 1
