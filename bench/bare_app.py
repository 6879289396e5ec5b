"""The yardstick of bench/gateway.py: a bare FastAPI hello-world, served by uvicorn with uvloop and
httptools as the gateway is. Whatever the gateway costs beyond it is the gateway's own."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
