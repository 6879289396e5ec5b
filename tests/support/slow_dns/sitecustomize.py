"""Loaded by a child process whose PYTHONPATH includes this folder: host names listed in
SLOW_DNS_HOSTS take SLOW_DNS_SECONDS to resolve, as with a DNS server that is going away."""

import os
import socket
import time

_hosts = set(filter(None, os.environ.get("SLOW_DNS_HOSTS", "").split(",")))
_real = socket.getaddrinfo


def _slow(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if host in _hosts:
        time.sleep(float(os.environ.get("SLOW_DNS_SECONDS", "60")))
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    return _real(host, *args, **kwargs)


if _hosts:
    socket.getaddrinfo = _slow
