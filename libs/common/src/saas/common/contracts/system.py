"""Contracts every process answers: `svc.<service>.ping`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class PingReply(BaseModel):
    service: str
    version: str
    instance: str
    time: datetime
