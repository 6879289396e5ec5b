"""One embedded server of a test's own, which the test may stop, start, freeze and thaw."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from saas.devstack.servers import EmbeddedStack, StackPorts


class PrivateServer:
    """One server of the embedded stack (`kind`: "nats", "valkey", ...) on ports of its own;
    started again on the same port, and with the same data when `durable`."""

    kind: str
    durable: bool = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = StackPorts.ephemeral()
        self._stack: EmbeddedStack | None = None

    def start(self) -> None:
        self._stack = EmbeddedStack(self.root, self.ports, durable=self.durable)
        self._stack.start(only={self.kind})

    def stop(self) -> None:
        if self._stack is not None:
            self.resume()  # a frozen server cannot act on SIGTERM
            self._stack.stop()
            self._stack = None

    @property
    def pid(self) -> int:
        assert self._stack is not None and self._stack.servers[0].process is not None
        return self._stack.servers[0].process.pid

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._stack is not None and self._stack.servers[0].process is not None:
            os.kill(self.pid, signal.SIGCONT)
