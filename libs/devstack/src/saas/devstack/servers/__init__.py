"""Embedded servers from PyPI wheels, one module per server, and the stack that runs them."""

from saas.devstack.servers.base import StackError, die_with_parent, free_port, port_is_free
from saas.devstack.servers.stack import EmbeddedStack, StackPorts

__all__ = [
    "EmbeddedStack",
    "StackError",
    "StackPorts",
    "die_with_parent",
    "free_port",
    "port_is_free",
]
