"""The core serves the standard reflection and health services: generic tools work against it unchanged."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from core.grpc.server import SERVICES
from tests.helpers.core import Core, core_settings, start_core, stop_core
from tests.helpers.tools import buf_or_skip, run

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _reflect(address: str) -> tuple[list[str], dict[str, object]]:
    """What a reflection client learns with nothing but the address: the services, and (decoded with the
    descriptors reflection sent) the answer of one call. Blocking, so it runs in a thread."""
    with grpc.insecure_channel(address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(db.get_services())
        pool = descriptor_pool.DescriptorPool(db)
        method = pool.FindServiceByName("ashao.v1.NetworkService").methods_by_name["GetNetworkInfo"]
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            "/ashao.v1.NetworkService/GetNetworkInfo",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        answer = call(request_cls(), timeout=10)
        return services, {"tiers": [t.name for t in answer.tiers], "slots": answer.max_worker_slots}


async def test_reflection_lists_every_service_and_describes_its_calls(core: Core) -> None:
    services, answer = await asyncio.to_thread(_reflect, core.app.address)
    assert set(SERVICES) <= set(services)
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(services)
    assert "ashao.v1.ChatService" in services and "ashao.v1.WorkerService" in services
    assert set(answer["tiers"]) == {"free", "basic", "pro", "ultra", "image"}  # type: ignore[call-overload]
    assert answer["slots"] == 1024


async def test_health_is_serving_then_not_serving_from_the_start_of_shutdown(tmp_path: Path) -> None:
    core = await start_core(core_settings(tmp_path))
    health = health_pb2_grpc.HealthStub(core.channel)
    try:
        whole = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        chat = await health.Check(health_pb2.HealthCheckRequest(service="ashao.v1.ChatService"), timeout=5)
        assert (whole.status, chat.status) == (SERVING, SERVING)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        watch = health.Watch(health_pb2.HealthCheckRequest(service="ashao.v1.ChatService"), timeout=20)
        first = await asyncio.wait_for(watch.read(), 5)
        assert first.status == SERVING
        stopping = asyncio.create_task(core.app.shutdown(grace=2.0))
        changed = await asyncio.wait_for(watch.read(), 5)  # told while the server still drains
        assert changed.status == NOT_SERVING
        assert not stopping.done() or stopping.exception() is None
        await asyncio.wait_for(stopping, 10)
    finally:
        await stop_core(core)


async def test_buf_curl_lists_services_and_calls_one_by_reflection(core: Core) -> None:
    buf = buf_or_skip()
    base = f"http://{core.app.address}"
    listed = await run(buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", base)
    assert listed.code == 0, listed.err
    names = listed.out.split()
    assert set(SERVICES) <= set(names), names
    called = await run(
        buf,
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--data",
        "{}",
        f"{base}/ashao.v1.NetworkService/GetNetworkInfo",
    )
    assert called.code == 0, called.err
    info = json.loads(called.out)
    assert {t["name"] for t in info["tiers"]} == {"free", "basic", "pro", "ultra", "image"}
    assert info["maxWorkerSlots"] == 1024
