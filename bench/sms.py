"""SMPP submit_sm throughput: the SMPP transport against node-smpp's SMSC (tests/peers/smsc).

    npm ci --prefix tests/peers/smsc
    .venv/bin/python bench/sms.py [--messages 5000] [--runs 5] [--window 10] [--concurrency 64]

Each run binds a fresh transport and sends ``--messages`` single-part GSM-7 SMS with
``--concurrency`` sends in flight (the window bounds what awaits the SMSC); the figure is the
median of the runs' messages a second, with the SMSC answering every ``submit_sm`` at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time

from tidings import model
from tidings.channels.sms import smpp

PEER = pathlib.Path(__file__).resolve().parents[1] / "tests" / "peers" / "smsc"


async def one_run(port: int, messages: int, window: int, concurrency: int) -> float:
    config = smpp.SmppConfig(
        "127.0.0.1", port, system_id="tidings", password="secret", source="Tidings", window=window
    )
    transport = smpp.SmppTransport(config)
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
    await transport.send(model.SmsMessage(0, "warm", "+33612345678", text))
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
                asyncio.run(one_run(port, args.messages, args.window, args.concurrency))
                for _ in range(args.runs)
            ]
        finally:
            process.terminate()
            process.wait()
    print(
        f"submit_sm to node-smpp, window {args.window}, {args.concurrency} sends in flight: "
        f"median {statistics.median(rates):,.0f} msg/s over {args.runs} runs "
        f"({', '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
