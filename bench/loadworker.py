"""A load generator speaking the worker protocol (``WorkerService.Connect``, from the proto alone).

``python -m bench.loadworker --target HOST:PORT --token T [--token T2 ...]`` opens one Connect stream
per token (one worker each) and runs every job pushed to it at ``--rate`` tokens/s for ``--tokens``
tokens. All jobs of a stream share one clock: every ``--tick-ms`` each job is given the tokens it is
due, stamped with that moment (``"<index>@<time_ns>"``), and the tokens of every job go out in ONE
``TokenBatch`` (a job's completion riding with its last tokens), as a worker agent batches them. A
job's first token goes at once; or, between ``SIGUSR2`` and ``SIGUSR1``, jobs wait, and on ``SIGUSR1``
every waiting job starts, each at its own phase within one token interval (so a held load does not
come in bursts). The same process drives ashao's core and the bench's bare relay, so
whatever it costs is the same on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

import grpc

from ashao.v1 import worker_pb2, worker_pb2_grpc


class _Job:
    __slots__ = ("job_id", "sent", "start_ns")

    def __init__(self, job_id: str, start_ns: int) -> None:
        self.job_id = job_id
        self.start_ns = start_ns
        """When its first token is due (0: waiting for the start signal)."""
        self.sent = 0


class Gate:
    """Whether jobs start at once, or wait for ``go()``."""

    def __init__(self) -> None:
        self.open = True
        self.streams: list[tuple[dict[str, _Job], asyncio.Event]] = []

    def close(self) -> None:
        """Jobs assigned from now on wait."""
        self.open = False

    def go(self, rate: float) -> None:
        """Every waiting job starts, spread over one token interval."""
        self.open = True
        now = time.time_ns()
        step = int(1e9 / rate)
        for jobs, wake in self.streams:
            for i, job in enumerate(jobs.values()):
                if not job.start_ns:
                    job.start_ns = now + (i * 7919) % step
            wake.set()


async def _stream(
    target: str, token: str, gate: Gate, *, slots: int, rate: float, total: int, tick_s: float
) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token != "-" else ()
        call = stub.Connect(metadata=metadata)
        await call.write(worker_pb2.ConnectRequest(hello=worker_pb2.WorkerHello(slots=slots, tiers=["free"])))
        welcome = await call.read()
        assert isinstance(welcome, worker_pb2.ConnectResponse) and welcome.HasField("welcome"), welcome
        jobs: dict[str, _Job] = {}
        wake = asyncio.Event()
        gate.streams.append((jobs, wake))

        async def read() -> None:
            while (msg := await call.read()) is not grpc.aio.EOF:
                assert isinstance(msg, worker_pb2.ConnectResponse)
                kind = msg.WhichOneof("msg")
                if kind == "assignment":
                    job_id = msg.assignment.job_id
                    jobs[job_id] = _Job(job_id, time.time_ns() if gate.open else 0)
                    wake.set()  # its first token goes at once
                elif kind == "cancel":
                    jobs.pop(msg.cancel.job_id, None)

        reader = asyncio.create_task(read())
        beat_ns = (welcome.welcome.heartbeat_interval_ms or 2000) * 1_000_000 // 2
        last_write = time.time_ns()
        per_ns = rate / 1e9
        try:
            while not reader.done():
                if not jobs:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(beat_ns / 1e9):
                            await wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(tick_s):
                            await wake.wait()
                wake.clear()
                now = time.time_ns()
                batch = worker_pb2.ConnectRequest()
                tb = batch.tokens
                tb.SetInParent()
                add = tb.jobs.add
                ended = []
                for job in jobs.values():
                    if not job.start_ns or job.start_ns > now:
                        continue
                    due = min(total, int((now - job.start_ns) * per_ns) + 1)
                    if due <= job.sent:
                        continue
                    jt = add()
                    jt.job_id = job.job_id
                    jt.offset = job.sent
                    jt.tokens.extend([f"{i}@{now}" for i in range(job.sent, due)])
                    job.sent = due
                    if due == total:
                        ended.append(job.job_id)
                for job_id in ended:
                    del jobs[job_id]
                    tb.completed.add(job_id=job_id, finish_reason="length")
                if tb.jobs or tb.completed:
                    await call.write(batch)
                    last_write = now
                elif now - last_write > beat_ns:  # (an idle stream must still show it is alive)
                    await call.write(
                        worker_pb2.ConnectRequest(heartbeat=worker_pb2.WorkerHeartbeat(running=len(jobs)))
                    )
                    last_write = now
        finally:
            reader.cancel()
            call.cancel()


async def _main(args: argparse.Namespace) -> None:
    gate = Gate()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, gate.close)
    loop.add_signal_handler(signal.SIGUSR1, gate.go, args.rate)
    await asyncio.gather(
        *(
            _stream(
                args.target,
                t,
                gate,
                slots=args.slots,
                rate=args.rate,
                total=args.tokens,
                tick_s=args.tick_ms / 1000,
            )
            for t in args.token
        )
    )


def main(argv: list[str] | None = None) -> None:
    """Run until killed (or the target ends the streams)."""
    p = argparse.ArgumentParser(prog="python -m bench.loadworker")
    p.add_argument("--target", required=True, help="host:port of the gRPC server")
    p.add_argument("--token", action="append", required=True, help="worker token ('-' for none); repeat")
    p.add_argument("--slots", type=int, default=1024)
    p.add_argument("--rate", type=float, default=50.0, help="tokens/s per job")
    p.add_argument("--tokens", type=int, default=500, help="tokens per job")
    p.add_argument("--tick-ms", type=float, default=5.0)
    args = p.parse_args(argv)
    import uvloop

    try:
        uvloop.run(_main(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
