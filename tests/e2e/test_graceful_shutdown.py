"""SIGTERM lets in-flight HTTP requests and bus handlers finish, then the process exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from saas.common.bus import Bus, BusClient
from saas.common.errors import ErrorCode, ServiceError
from saas.devstack.servers import free_port
from tests.support.slow_process import Done, Slow
from tests.support.waiting import wait_until_ready

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).resolve().parent.parent / "support" / "slow_process.py"


def start_slow_process(stack, shutdown_timeout: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        **stack.env(),
        "OPS_PORT": str(port),
        "SHUTDOWN_TIMEOUT": str(shutdown_timeout),
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(SCRIPT.parents[2]),
    }
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=30)
    except AssertionError:
        process.kill()
        raise
    return process, url


async def test_in_flight_work_completes_during_sigterm(stack):
    process, url = start_slow_process(stack, shutdown_timeout=10)
    bus = Bus(stack.nats_url, "drain-test")
    await bus.connect()
    client = BusClient(bus, timeout=10)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            slow_http = asyncio.create_task(http.get("/slow", params={"seconds": 1.5}))
            slow_bus = asyncio.create_task(
                client.request("slowpoke", "slow", Slow(seconds=1.5), Done)
            )
            await asyncio.sleep(0.5)  # both are in flight now
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)

            # No new work is taken once draining has begun...
            with pytest.raises(ServiceError) as refused:
                await client.request("slowpoke", "slow", Slow(seconds=0), Done, timeout=1)
            assert refused.value.code in (ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.TIMEOUT)
            with pytest.raises(httpx.ConnectError):
                await http.get("/health", timeout=1)

            # ...but what was in flight finishes.
            response = await slow_http
            assert response.status_code == 200 and response.json() == {"slept": 1.5}
            assert (await slow_bus).slept == 1.5
        assert process.wait(timeout=15) == 0
    finally:
        await bus.close()
        if process.poll() is None:
            process.kill()


async def test_work_that_outlives_the_timeout_is_named_in_the_log(stack):
    process, _ = start_slow_process(stack, shutdown_timeout=1)
    bus = Bus(stack.nats_url, "drain-timeout-test")
    await bus.connect()
    try:
        pending = asyncio.create_task(
            BusClient(bus, timeout=10).request("slowpoke", "slow", Slow(seconds=30), Done)
        )
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=20)
        assert process.returncode == 0
        log = output.decode()
        assert "shutdown timeout expired with work in flight" in log
        assert "slowpoke.slow" in log
        pending.cancel()
    finally:
        await bus.close()
        if process.poll() is None:
            process.kill()
