"""Two cores, one PostgreSQL, one NATS: any core admits any send, the core whose worker has room runs
it, any core streams it; money, sessions, keys, cancellations and revocations are the cluster's."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ashao.v1 import account_pb2, chat_pb2, image_pb2, image_pb2_grpc, network_pb2, operator_pb2, worker_pb2
from core.economics import SIGNUP_GRANT, TIERS
from tests.core.cluster.conftest import StartCores
from tests.helpers.core import Core, StreamWorker, collect, connect_worker
from tests.helpers.images import png
from tests.helpers.wait import eventually, eventually_async

pytestmark = pytest.mark.timeout(60)


async def credits_become(core: Core, user: object, amount: int) -> None:
    """Wait until ``user`` holds ``amount`` credits as ``core`` reads them."""

    async def holds() -> bool:
        r = await core.accounts.GetCredits(account_pb2.GetCreditsRequest(), metadata=user)
        return bool(r.credits == amount)

    await eventually_async(holds)


async def test_a_send_to_one_core_runs_on_the_others_worker_and_streams_from_both(cores: StartCores) -> None:
    a, b = await cores(2)
    worker = await connect_worker(a, slots=2)
    job_id, _ = await b.send("hello across")
    assignment = await worker.assignment()
    assert assignment.job_id == job_id and assignment.messages[-1].content == "hello across"
    await worker.tokens(job_id, ["one ", "two ", "three"])
    await worker.complete(job_id)
    expected = [(1, "token", "one "), (2, "token", "two "), (3, "token", "three"), (4, "done", 3)]
    assert await collect(b, job_id) == expected  # the admitting core, following the other
    assert await collect(a, job_id) == expected  # the running core
    assert await collect(b, job_id, after_seq=2) == expected[2:]


async def test_priced_sends_over_both_cores_accept_exactly_what_the_credits_buy(cores: StartCores) -> None:
    a, b = await cores(2)
    cost = TIERS["pro"].credit_cost
    user = await a.sign_in(credits=40 * cost - SIGNUP_GRANT)

    async def send(i: int) -> str:
        core = (a, b)[i % 2]
        try:
            await core.chat.SendMessage(
                chat_pb2.SendMessageRequest(tier="pro", content=f"m{i}"), metadata=user
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"

    outcomes = await asyncio.gather(*(send(i) for i in range(100)))
    assert outcomes.count("OK") == 40
    assert outcomes.count("FAILED_PRECONDITION") == 60
    for core in (a, b):
        r = await core.accounts.GetCredits(account_pb2.GetCreditsRequest(), metadata=user)
        assert r.credits == 0


async def test_a_session_and_an_api_key_work_on_every_core(cores: StartCores) -> None:
    a, b = await cores(2)
    user = await a.sign_in()
    on_a = await a.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=user)
    on_b = await b.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=user)
    assert on_a.user.id == on_b.user.id
    key = await b.accounts.CreateApiKey(account_pb2.CreateApiKeyRequest(name="k"), metadata=user)
    keyed = (("authorization", f"Bearer {key.secret}"),)
    assert (await a.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=keyed)).user.id == on_a.user.id
    # the operator token is the cluster's: the second core adopted the first's
    assert a.operator == b.operator


async def test_a_cancel_on_one_core_stops_the_job_on_the_others_worker(cores: StartCores) -> None:
    """An image request times out on the core that admitted it: the worker of the other core that
    holds the job is told to stop, and the credits come back."""
    a, b = await cores(2, image_timeout_s=1.0)
    worker = await connect_worker(a, slots=1, tiers=("image",))
    user = await b.sign_in()
    images = image_pb2_grpc.ImageServiceStub(b.channel)
    call = asyncio.ensure_future(
        images.GenerateImage(
            image_pb2.GenerateImageRequest(prompt="never drawn", style="Cinematic", aspect="Square"),
            metadata=user,
        )
    )
    job_id = (await worker.assignment()).job_id
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call, 10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    message = await worker.next()
    assert message.HasField("cancel") and message.cancel.job_id == job_id
    await credits_become(a, user, SIGNUP_GRANT)


async def test_an_image_nobody_in_the_cluster_can_draw_is_refused_at_once(cores: StartCores) -> None:
    _, b = await cores(2)
    user = await b.sign_in()
    images = image_pb2_grpc.ImageServiceStub(b.channel)
    await eventually(lambda: b.app.jobs.cluster.read)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await images.GenerateImage(
            image_pb2.GenerateImageRequest(prompt="nobody draws", style="Cinematic", aspect="Square"),
            metadata=user,
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "no image worker" in (
        info.value.details() or ""
    )
    await credits_become(b, user, SIGNUP_GRANT)


async def test_a_job_cancelled_before_any_core_took_it_ends_and_is_refunded(cores: StartCores) -> None:
    """The only image worker is busy: the second picture waits on the shared queue, no core holds it,
    and its wait runs out on the core that admitted it, which ends it there."""
    [a] = await cores(1)
    [b] = await cores(1, image_timeout_s=1.0)
    worker = await connect_worker(a, slots=1, tiers=("image",))
    user = await b.sign_in()

    def draw(core: Core, prompt: str) -> asyncio.Future[image_pb2.GenerateImageResponse]:
        request = image_pb2.GenerateImageRequest(prompt=prompt, style="Cinematic", aspect="Square")
        return asyncio.ensure_future(
            image_pb2_grpc.ImageServiceStub(core.channel).GenerateImage(request, metadata=user)
        )

    first = draw(a, "the first")
    busy = (await worker.assignment()).job_id
    second = draw(b, "the second")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(second, 10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    async def second_cancelled() -> bool:
        row = await b.app.store.fetchone("SELECT state FROM jobs WHERE id <> ?", (busy,))
        return row is not None and row[0] == "cancelled"

    await eventually_async(second_cancelled)
    await worker.call.write(
        worker_pb2.ConnectRequest(
            image=worker_pb2.ImageResult(job_id=busy, data=png(), mime_type="image/png")
        )
    )
    await asyncio.wait_for(first, 10)
    await credits_become(b, user, SIGNUP_GRANT - TIERS["image"].credit_cost)  # the second was refunded
    with pytest.raises(asyncio.TimeoutError):
        await worker.assignment(timeout=2)  # and the free worker is not given the cancelled job


async def test_a_worker_revoked_on_one_core_is_let_go_by_the_other(cores: StartCores) -> None:
    a, b = await cores(2)
    _, token = await a.register(slots=1)
    revoked = StreamWorker(a, token, slots=1)
    await revoked.hello()
    job_id, _ = await b.send("hi")
    assert (await revoked.assignment()).job_id == job_id
    other = await connect_worker(b, slots=1)
    await b.operators.RevokeWorker(
        operator_pb2.RevokeWorkerRequest(worker_id=revoked.worker_id), metadata=b.operator
    )
    await eventually(lambda: revoked.call.done())
    assignment = await other.assignment(timeout=20)  # its job, taken back on the first core
    assert assignment.job_id == job_id and assignment.attempt == 2
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.workers.GetWorkerAccount(
            worker_pb2.GetWorkerAccountRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_either_core_reports_the_networks_figures(cores: StartCores) -> None:
    a, b = await cores(2)
    worker = await connect_worker(a, slots=3)

    async def b_sees_the_worker() -> bool:
        return bool((await b.network.GetStats(network_pb2.GetStatsRequest())).active_workers == 1)

    await eventually_async(b_sees_the_worker)  # (the other core's heartbeat comes every 2 s)
    assert b.app.jobs.serving("free") and not b.app.jobs.board.serving("free")  # served by a's worker
    assert not b.app.jobs.serving("image")

    before = [(await c.network.GetStats(network_pb2.GetStatsRequest())).jobs_completed for c in (a, b)]
    job_id, _ = await b.send("counted everywhere")
    assert (await worker.assignment()).job_id == job_id
    await worker.tokens(job_id, ["done "])
    await worker.complete(job_id)

    async def counted_by(core: Core, was: int) -> bool:
        return bool((await core.network.GetStats(network_pb2.GetStatsRequest())).jobs_completed == was + 1)

    await eventually_async(lambda: counted_by(a, before[0]))  # the core that ran it
    await eventually_async(lambda: counted_by(b, before[1]))  # and the other, from a's next heartbeat


async def test_a_picture_received_by_one_core_is_served_by_the_other(cores: StartCores) -> None:
    a, b = await cores(2)
    worker = await connect_worker(a, slots=1, tiers=("image",))
    user = await b.sign_in()
    call = asyncio.ensure_future(
        image_pb2_grpc.ImageServiceStub(b.channel).GenerateImage(
            image_pb2.GenerateImageRequest(prompt="a lighthouse", style="Cinematic", aspect="Square"),
            metadata=user,
        )
    )
    assignment = await worker.assignment()
    data = png()
    await worker.call.write(
        worker_pb2.ConnectRequest(
            image=worker_pb2.ImageResult(job_id=assignment.job_id, data=data, mime_type="image/png")
        )
    )
    made = await asyncio.wait_for(call, 10)
    for core in (a, b):
        got = await image_pb2_grpc.ImageServiceStub(core.channel).GetImage(
            image_pb2.GetImageRequest(image_id=made.image.id)
        )
        assert got.data == data


async def test_a_job_pulled_by_a_core_whose_worker_left_goes_to_the_other(cores: StartCores) -> None:
    a, b = await cores(2, release_after_s=0.5)
    leaving = await connect_worker(a, slots=1)
    job_id, _ = await a.send("first")
    assert (await leaving.assignment()).job_id == job_id
    await leaving.complete(job_id)  # (no tokens: an empty answer is retried elsewhere)
    staying = await connect_worker(b, slots=1)
    leaving.cancel()
    assignment = await staying.assignment(timeout=20)
    assert assignment.job_id == job_id
    await staying.tokens(job_id, ["fine"])
    await staying.complete(job_id)
    assert (await collect(a, job_id))[-1] == (2, "done", 1)


async def test_nothing_of_a_job_is_lost_while_no_core_has_a_worker(cores: StartCores) -> None:
    a, b = await cores(2)
    ids = [(await (a, b)[i % 2].send(f"q{i}"))[0] for i in range(6)]
    worker = await connect_worker(b, slots=6)
    got = {(await worker.assignment(timeout=10)).job_id for _ in ids}
    assert got == set(ids)
    await eventually(lambda: b.app.jobs.snapshot().busy_slots == 6)


async def test_a_reader_waiting_on_the_core_that_then_takes_the_job_gets_every_token(
    cores: StartCores,
) -> None:
    """The stream opens before any core took the job (it waits on a mirror); the same core then takes it
    from the shared queue: the reader is given the job's own log, not a mirror of it that would end
    with the store's count of tokens and none of the tokens."""
    [a] = await cores(1)
    job_id, _ = await a.send("wait for me")
    reading = asyncio.ensure_future(collect(a, job_id, timeout=20))
    node = a.app.node
    assert node is not None
    await eventually(lambda: node.remote.find(job_id) is not None)
    worker = await connect_worker(a, slots=1)
    assert (await worker.assignment()).job_id == job_id
    await worker.tokens(job_id, ["one ", "two"])
    await worker.complete(job_id)
    assert await reading == [(1, "token", "one "), (2, "token", "two"), (3, "done", 2)]
