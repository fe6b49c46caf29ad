"""Connections benchmark: idle agent streams held by one headend process.

    .venv/bin/python bench/connections.py [--streams N]

Starts what it needs in a temp dir (embedded PostgreSQL, the Temporal dev
server, a headend child process with mutual TLS; N gateways enrolled, each
with its own certificate), then, from this process, one channel per agent as
real agents do:

1. N agents connect (Hello with one asset, wait for the Welcome; CONNECT_AT
   at a time, as a reconnect storm would): connects/s;
2. they stay idle, sending a heartbeat every HEARTBEAT_S: the headend's RSS
   per stream (its RSS with the streams minus before, over N) and its CPU
   while idle, over IDLE_S;
3. the baseline: the same N mTLS streams to a bare grpc.aio server
   (bench/_bare.py, the Connect method only reads), its RSS per stream.

The goal is 10,000 streams at <= 2x the bare stream's RSS and idle CPU < 10 %
of a core. The last line is ``rss_per_stream_vs_bare_ratio <x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from _stack import CONNECT, Stack, bess, cpu_seconds, stack

from gridpilot.ops.processes import free_port
from gridpilot.schema.pb import agent_pb2 as pb

STREAMS = 2000
CONNECT_AT = 100
HEARTBEAT_S = 10.0
IDLE_S = 20.0
SETTLE_S = 3.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def gateway(i: int) -> str:
    return f"conn{i:05d}"


class Fleet:
    """N idle agent streams to one address, held until ``close``."""

    def __init__(self, address: str, creds: list[grpc.ChannelCredentials], welcome: bool):
        self.address, self.creds, self.welcome = address, creds, welcome
        self.channels: list[grpc.aio.Channel] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def _one(self, i: int, slots: asyncio.Semaphore, held: asyncio.Event) -> None:
        async with slots:
            channel = grpc.aio.secure_channel(self.address, self.creds[i])
            self.channels.append(channel)
            stream = channel.stream_stream(
                CONNECT, request_serializer=lambda m: m.SerializeToString()
            )()
            hello = pb.Hello(
                gateway_id=gateway(i), site_id=f"site-{gateway(i)}", agent_version="bench",
                assets=[bess(f"{gateway(i)}-bess")],
            )  # fmt: skip
            await stream.write(pb.AgentMessage(hello=hello))
            if self.welcome:
                msg = await stream.read()
                if msg is grpc.aio.EOF:
                    raise SystemExit(f"{gateway(i)}: refused ({await stream.code()})")
            else:
                await channel.channel_ready()
        held.set()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            beat = pb.Heartbeat()
            beat.time.FromDatetime(datetime.now(UTC))
            await stream.write(pb.AgentMessage(heartbeat=beat))

    async def open(self, n: int) -> float:
        """Connect n streams; seconds it took."""
        slots = asyncio.Semaphore(CONNECT_AT)
        held = [asyncio.Event() for _ in range(n)]
        start = time.perf_counter()
        self.tasks = [asyncio.create_task(self._one(i, slots, held[i])) for i in range(n)]
        waiting = asyncio.gather(*(h.wait() for h in held))
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(waiting), *self.tasks], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in self.tasks:
                task.result()  # a stream failed: raise why
        return time.perf_counter() - start

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def headend_figures(s: Stack, creds: list[grpc.ChannelCredentials]) -> dict[str, float]:
    pid = s.headend.pid
    await asyncio.sleep(SETTLE_S)
    before = rss_kb(pid)
    fleet = Fleet(s.grpc_address, creds, welcome=True)
    took = await fleet.open(len(creds))
    await asyncio.sleep(SETTLE_S)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(IDLE_S)
    idle_cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0)
    after = rss_kb(pid)
    await fleet.close()
    return {"connect_s": took, "rss_kb": (after - before) / len(creds), "idle_cpu": idle_cpu}


async def bare_figures(address: str, pid: int, creds: list[grpc.ChannelCredentials]) -> float:
    await asyncio.sleep(SETTLE_S)
    before = rss_kb(pid)
    fleet = Fleet(address, creds, welcome=False)
    await fleet.open(len(creds))
    await asyncio.sleep(SETTLE_S)
    after = rss_kb(pid)
    await fleet.close()
    return (after - before) / len(creds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=STREAMS)
    n = parser.parse_args().streams
    started = time.monotonic()
    sites = {gateway(i): f"site-{gateway(i)}" for i in range(n)}
    print(f"enrolling {n} gateways ...", flush=True)
    with stack("bench-connections", sites) as s:
        creds = [s.credentials(gateway(i)) for i in range(n)]
        print(f"holding {n} agent streams on the headend ...", flush=True)
        head = asyncio.run(headend_figures(s, creds))
        # Printed now: a failure of the baseline below leaves them on record.
        print(f"connects_per_s              {n / head['connect_s']:.0f} ({CONNECT_AT} at a time)")
        print(f"headend_kb_per_stream       {head['rss_kb']:.1f}")
        idle = head["idle_cpu"] * 100
        print(f"headend_idle_cpu_pct        {idle:.1f} (of one core, {n} streams)")
        server = s.pki.issue_headend(["localhost"], ["127.0.0.1"])
        port = free_port()
        bare = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_bare.py")), str(port),
             str(server.cert_file), str(server.key_file), str(s.pki.ca_file)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert bare.stdout is not None
            if bare.stdout.readline().strip() != b"ready":
                raise SystemExit("the bare gRPC server did not start")
            print(f"holding {n} bare mTLS streams ...", flush=True)
            bare_kb = asyncio.run(bare_figures(f"127.0.0.1:{port}", bare.pid, creds))
        finally:
            bare.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                bare.wait(10)
    print(f"setup: {n} agents, one channel each, mutual TLS, heartbeat every {HEARTBEAT_S:.0f} s")
    print(f"bare_kb_per_stream          {bare_kb:.1f}")
    print(f"bench_wall_seconds          {time.monotonic() - started:.0f}")
    print(f"rss_per_stream_vs_bare_ratio {head['rss_kb'] / bare_kb:.2f}")


if __name__ == "__main__":
    main()
