"""SMPP submit_sm throughput: the SMPP transport against node-smpp's SMSC (tests/peers/smsc).

    npm ci --prefix tests/peers/smsc
    .venv/bin/python bench/sms.py [--messages 5000] [--runs 5] [--window 10] [--concurrency 64]
                                  [--group up|down]

Each run binds a fresh transport and sends ``--messages`` single-part GSM-7 SMS with
``--concurrency`` sends in flight (the window bounds what awaits the SMSC); the figure is the
median of the runs' messages a second, with the SMSC answering every ``submit_sm`` at once.

``--group`` sends through a failover group of two SMPP connectors (as ``TIDINGS_SMPP_HOST``
with two SMSCs builds it, default breaker settings): ``up``, the SMSC first and a refused port
second (the group's own cost); ``down``, the refused port first (it is marked down by the
warm-up sends, as it would be in service) and the SMSC second. The run also reports how long
the first message took to reach the backup while the primary was still being tried.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from tidings import model
from tidings.channels import base, failover
from tidings.channels.sms import smpp

PEER = pathlib.Path(__file__).resolve().parents[1] / "tests" / "peers" / "smsc"


def closed_port() -> int:
    """A loopback port with no listener (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


FIRST_TO_BACKUP: list[float] = []


async def one_run(
    port: int, messages: int, window: int, concurrency: int, group: str | None = None
) -> float:
    def connector(at: int) -> smpp.SmppTransport:
        config = smpp.SmppConfig(
            "127.0.0.1", at, system_id="tidings", password="secret", source="Tidings", window=window
        )
        return smpp.SmppTransport(config)

    transport: base.Transport[model.SmsMessage] = connector(port)
    if group is not None:
        refused = connector(closed_port())
        order = [transport, refused] if group == "up" else [refused, transport]
        transport = failover.FailoverTransport(order, names=["a", "b"])
    text = "Your verification code is 123456. It expires in 10 minutes."
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            i = queue.get_nowait()
            message = model.SmsMessage(i, f"ev-{i}", "+33612345678", text)
            outcome = await transport.send(message)
            failures += outcome.kind is not model.OutcomeKind.DELIVERED

    # bind before the clock starts
    first = time.perf_counter()
    await transport.send(model.SmsMessage(0, "warm", "+33612345678", text))
    if group == "down":
        FIRST_TO_BACKUP.append(time.perf_counter() - first)
        await transport.send(model.SmsMessage(0, "warm", "+33612345678", text))  # marks it down
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await transport.aclose()
    if failures:
        raise SystemExit(f"{failures} sends failed")
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--group", choices=["up", "down"], default=None)
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for the SMSC")
    with tempfile.TemporaryDirectory() as tmp:
        # no PDU log: the SMSC's own cost stays small
        options = json.dumps({"port": 0})
        process = subprocess.Popen(
            [node, str(PEER / "server.js"), options], stdout=subprocess.PIPE, text=True, cwd=tmp
        )
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline().split()[1])
            rates = [
                asyncio.run(one_run(port, args.messages, args.window, args.concurrency, args.group))
                for _ in range(args.runs)
            ]
        finally:
            process.terminate()
            process.wait()
    how = f" through a failover group (primary {args.group})" if args.group else ""
    if FIRST_TO_BACKUP:
        how += (
            f", first message to the backup in median "
            f"{statistics.median(FIRST_TO_BACKUP) * 1000:.1f} ms"
        )
    print(
        f"submit_sm to node-smpp{how}, window {args.window}, {args.concurrency} sends in flight: "
        f"median {statistics.median(rates):,.0f} msg/s over {args.runs} runs "
        f"({', '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
