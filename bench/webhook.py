"""Webhook deliveries per second from the webhook transport to a local receiver.

    .venv/bin/python bench/webhook.py [--messages 20000] [--concurrency 64] [--pool 32] [--plain]

The receiver is its own process (uvicorn with httptools on uvloop, one worker) that checks
every request's ``Tidings-Signature`` with :func:`tidings.signing.verify` and answers
``200 {"ok":true}``. The sender is :class:`tidings.channels.webhook.WebhookTransport` as the
worker uses it: pooled keep-alive connections, a signed ~300-byte JSON body per message, the
address policy checked on each new connection. ``concurrency`` sends are in flight at once.
Throughput = messages / wall time of the timed run (after a warm-up of 1,000). ``--plain``
sends the same signed body with a bare pooled ``httpx.AsyncClient``: the baseline that shows
what the transport's own work (address checks, outcome mapping, bounded reads) costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

SECRET = "whsec_bench_secret_value"
_OK = b'{"ok":true}'


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The receiver: read the body, verify the signature, answer 200 (401 if it fails)."""
    from tidings import signing

    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    header = next((v.decode() for k, v in scope["headers"] if k == b"tidings-signature"), None)
    try:
        signing.verify(SECRET, header, body, 300)
        status = 200
    except signing.SignatureError:
        status = 401
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": _OK})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        "bench.webhook:receiver_app",
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the receiver did not start")


class _PlainClient:
    """The baseline: a bare pooled httpx client POSTing the same signed body."""

    def __init__(self, pool: int):
        import httpx

        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        self._client = httpx.AsyncClient(limits=limits, trust_env=False)

    async def send(self, message: Any) -> Any:
        from tidings import model, signing

        response = await self._client.post(
            message.url,
            content=message.body.encode(),
            headers={
                "content-type": "application/json",
                signing.HEADER: signing.sign(SECRET, message.body),
            },
        )
        ok = 200 <= response.status_code < 300
        return model.Outcome(model.OutcomeKind.DELIVERED if ok else model.OutcomeKind.FAILED)

    async def aclose(self) -> None:
        await self._client.aclose()


async def drive(
    url: str, messages: int, concurrency: int, pool: int, plain: bool = False
) -> dict[str, Any]:
    from tidings import model
    from tidings.channels import webhook

    transport: Any = (
        _PlainClient(pool)
        if plain
        else webhook.WebhookTransport(
            webhook.WebhookConfig(secret=SECRET, allow_private=True, pool_size=pool)
        )
    )
    body = json.dumps(
        {
            "event": "orderShipped",
            "order": {"id": "A-1029384", "carrier": "UPS", "tracking": "1Z999AA10123456784"},
            "customer": {"email": "jack@example.com", "firstName": "Jack"},
            "items": [{"sku": "JKT-LEATHER-M", "qty": 1, "price": "125.00"}],
        }
    )
    latencies: list[float] = []
    failures = 0

    async def run(count: int, keep: bool) -> None:
        nonlocal failures
        queue = iter(range(count))

        async def one_sender() -> None:
            nonlocal failures
            for n in queue:
                started = time.perf_counter()
                outcome = await transport.send(
                    model.WebhookMessage(event_id=n, message_id=f"m{n}", url=url, body=body)
                )
                if keep:
                    latencies.append(time.perf_counter() - started)
                if outcome.kind is not model.OutcomeKind.DELIVERED:
                    failures += 1

        await asyncio.gather(*(one_sender() for _ in range(concurrency)))

    await run(1000, keep=False)
    failures = 0
    started = time.perf_counter()
    await run(messages, keep=True)
    elapsed = time.perf_counter() - started
    await transport.aclose()
    latencies.sort()
    return {
        "messages": messages,
        "seconds": round(elapsed, 2),
        "per_second": round(messages / elapsed),
        "failures": failures,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument(
        "--plain", action="store_true", help="baseline: a bare httpx client, same body"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook", "--serve", str(port)], cwd=root
    )
    try:
        wait_listening(port)
        import uvloop

        result = uvloop.run(
            drive(
                f"http://127.0.0.1:{port}/hook",
                args.messages,
                args.concurrency,
                args.pool,
                args.plain,
            )
        )
    finally:
        receiver.terminate()
        receiver.wait(10)
    result.update(
        client="httpx" if args.plain else "WebhookTransport",
        concurrency=args.concurrency,
        pool=args.pool,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
