"""Polling helpers for tests that drive real processes."""

from __future__ import annotations

import time

import httpx


def wait_until_ready(url: str, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url + "/health/ready", timeout=2)
            if response.status_code == 200:
                return response
            last = response.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout}s: {last}")
