"""Workers reach a core served over TLS: tokens never cross the network in clear."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest

from ashao.v1 import chat_pb2, chat_pb2_grpc, worker_pb2, worker_pb2_grpc
from core.app import CoreApp
from tests.helpers.agents import agent_settings, running
from tests.helpers.core import core_settings
from tests.helpers.net import free_port
from tests.helpers.tls import self_signed
from tests.helpers.wait import eventually

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


async def test_agent_serves_a_tls_core_and_plaintext_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    addr = f"127.0.0.1:{free_port()}"
    app = CoreApp(
        core_settings(
            tmp_path, grpc_addr=addr, tls_cert_file=cert, tls_key_file=key, worker_registration="open"
        )
    )
    await app.start()
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(addr, creds) as channel:
            s = agent_settings(tmp_path, addr, tls_ca_file=cert, tls=True, synthetic_tokens=3)
            async with running(s) as (agent, _):
                assert agent.connected
                chat = chat_pb2_grpc.ChatServiceStub(channel)
                job = (await chat.SendMessage(chat_pb2.SendMessageRequest(tier="free", content="hi"))).job_id
                await eventually(lambda: app.jobs.snapshot().jobs_completed == 1)
                done = (await chat.GetJob(chat_pb2.GetJobRequest(job_id=job))).job
                assert done.tokens == 3
        # a client that does not speak TLS gets nowhere
        async with grpc.aio.insecure_channel(addr) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await worker_pb2_grpc.WorkerServiceStub(plain).RegisterWorker(
                    worker_pb2.RegisterWorkerRequest(name="x"), timeout=3
                )
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        await app.shutdown(grace=0.2)
