"""Our parser of NATS header lines reads every header block as nats-py's own does."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from saas.common.bus.connection import _parse_header_lines

BLOCKS = [
    b"Nats-Msg-Id: 0b7c1b5e-8d3f-4e0c-9a41-3f0e7c2d9b11\r\nNats-Expected-Stream: EVENTS\r\n\r\n",
    b"Name:Value\r\nOther:\tspaced \r\n",
    b"Two Words: dropped\r\nkept: yes\r\n",
    b"tab\tinside: dropped\r\nsep\x1carator: dropped\r\n",
    b"\xff\xfe: not ascii\r\nvalue: \xff\xfe malformed\r\n",
    b"no colon here\r\n: empty name\r\n  padded  :  both sides  \r\n",
    b"k: v: w\r\nk: again\r\n",
    b"",
    b"\r\n\r\n",
]


@pytest.mark.parametrize("block", BLOCKS)
def test_header_lines_parse_as_nats_py_parses_them(block):
    assert _parse_header_lines(block) == Client._parse_header_lines(block)
