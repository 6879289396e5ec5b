"""A TCP proxy a test can cut, as a network partition would, and mend again.

`cut()` drops every connection through it and refuses new ones, `blackhole()` keeps connections
open but lets no byte through either way (a silent partition: no reset reaches the client), and
`mend()` lets traffic flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from saas.devstack.servers import free_port


class NetCut:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> NetCut:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        return self

    def url(self, scheme: str = "nats") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or not self._server.is_serving():
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                while not self._flowing.is_set():  # noqa: ASYNC110 - blackholed: hold the bytes
                    await asyncio.sleep(0.05)
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    def _call(self, fn) -> None:  # type: ignore[no-untyped-def]
        asyncio.run_coroutine_threadsafe(fn(), self._loop).result(5)

    def cut(self) -> None:
        """Reset every connection and refuse new ones until `mend`."""

        async def do() -> None:
            assert self._server is not None
            self._server.close()
            for w in list(self._writers):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            self._writers.clear()

        self._call(do)

    def blackhole(self) -> None:
        """Keep connections open but carry nothing, in either direction."""
        self._flowing.clear()

    def mend(self) -> None:
        self._flowing.set()

        async def do() -> None:
            if self._server is None or not self._server.is_serving():
                self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

        self._call(do)

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
