"""A TCP proxy on 127.0.0.1 that can go silent (swallow bytes both ways while
keeping connections open: a dead link without FIN/RST) and recover; with an
``ssl`` context it terminates TLS (e.g. in front of a plain-text server)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_


class TcpProxy:
    def __init__(
        self, listen_port: int, target_port: int, ssl: ssl_.SSLContext | None = None
    ) -> None:
        self.listen_port = listen_port
        self.ssl = ssl
        self.target_port = target_port
        self.silent = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.listen_port, ssl=self.ssl
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(reader, up_w)),
            asyncio.create_task(self._pump(up_r, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
                self._tasks.discard(p)
            for w in (writer, up_w):
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            if not self.silent:
                dst.write(data)
                await dst.drain()
