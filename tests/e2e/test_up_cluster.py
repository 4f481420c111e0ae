"""`ashao up --store … --bus … --cores 2 --facades 2`: the README's cluster on one machine, as a user
starts it (skipped where PostgreSQL or NATS is not reachable)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from ashao_cli.devnet import consecutive, wait_for_port
from ashao_cli.main import LOOPBACK_REDIS, redis_answers
from tests.helpers.bus import cluster_name, require_nats
from tests.helpers.postgres import fresh_database, require_postgres
from tests.helpers.procs import ashao_up

pytestmark = pytest.mark.timeout(150)

BURST = 6
"""Sends one address may make at once (the test's limit, refilled slowly)."""


def stream(client: httpx.Client, job_id: str, last_event_id: str = "") -> list[str]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream("GET", "/api/chat/stream", params={"jobId": job_id}, headers=headers) as r:
        assert r.status_code == 200
        return [line for line in r.iter_lines() if line.startswith(("id: ", "data: "))]


async def test_up_starts_a_cluster_any_facade_serves_and_limits_hold_across_facades(tmp_path: Path) -> None:
    admin = await require_postgres()
    bus = await require_nats()
    shared_limits = redis_answers(LOOPBACK_REDIS)
    async with fresh_database(admin) as dsn, cluster_name(bus) as name:
        env = {
            "ASHAO_CLUSTER_NAME": name,
            "ASHAO_SEND_RATE_PER_IP": "0.01",
            "ASHAO_SEND_BURST_PER_IP": str(BURST),
        }
        args = ("--store", dsn, "--bus", bus, "--cores", "2", "--facades", "2", "--tokens-per-sec", "0")
        with ashao_up(tmp_path, *args, env=env, ports=2) as (proc, http_addr, _):
            facades = consecutive(http_addr, 2)
            for addr in facades:
                if not wait_for_port(addr, timeout=90, proc=proc):
                    proc.kill()
                    raise AssertionError(f"facade {addr} did not start:\n{proc.communicate(timeout=30)[0]}")
            one, two = (httpx.Client(base_url=f"http://{a}", timeout=15) for a in facades)
            with one, two:
                sent = one.post("/api/chat/send", json={"tier": "free", "content": "hi"})
                assert sent.status_code == 200, sent.text
                job_id, conversation = sent.json()["jobId"], sent.json()["conversationId"]
                events = stream(two, job_id)  # sent to one facade, streamed from the other
                assert events[-1].startswith('data: {"type":"done"')
                assert stream(one, job_id, last_event_id="3") == events[6:]  # resumed on the first

                r = two.get(f"/api/conversations/{conversation}")
                assert r.status_code == 200 and r.json()["messages"][-1]["role"] == "assistant"
                for client in (one, two):  # the signed registry lists both facades, with one key
                    relays = client.get("/registry").json()["relays"]
                    assert [e["endpoint"] for e in relays] == [f"http://{a}" for a in facades]
                    assert len({e["public_key"] for e in relays}) == 1

                outcomes = [
                    (one, two)[i % 2]
                    .post("/api/chat/send", json={"tier": "free", "content": f"m{i}"})
                    .status_code
                    for i in range(3 * BURST)
                ]
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    # one address, its sends spread over both facades (each preferring another core): with the limits
    # shared, it gets the burst once (one send already went); each core on its own would give it twice
    if shared_limits:
        assert "rate limits shared through redis://" in out
        assert outcomes.count(200) == BURST - 1 and outcomes.count(429) == 2 * BURST + 1, outcomes
    else:
        assert "each core applies the rate limits on its own" in out
        assert set(outcomes) == {200, 429}
