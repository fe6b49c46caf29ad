"""The baseline server of ``connections.py``: a bare grpc.aio server with the
same mutual TLS as the headend, whose Connect method only reads (no Welcome,
no session). Run as ``python bench/_bare.py PORT CERT KEY CA``; prints
``ready`` once it serves."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

CONNECT = "/gridpilot.v1.AgentGateway/Connect"


async def connect(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
    async for _ in requests:
        pass


async def serve(port: int, cert: bytes, key: bytes, ca: bytes) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "gridpilot.v1.AgentGateway",
        {"Connect": grpc.stream_stream_rpc_method_handler(connect)},  # type: ignore[arg-type]
    )
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=ca,
        require_client_auth=True,
    )
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def main() -> None:
    port, cert, key, ca = sys.argv[1:5]
    files = (Path(cert).read_bytes(), Path(key).read_bytes(), Path(ca).read_bytes())
    asyncio.run(serve(int(port), *files))


if __name__ == "__main__":
    main()
