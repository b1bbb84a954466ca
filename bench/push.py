"""Push throughput: notifications a second through the APNs and FCM transports to the local
HTTP/2 test servers of ``tests/push_servers.py`` (hypercorn over TLS, ALPN h2).

    .venv/bin/python bench/push.py [--messages 5000] [--runs 5] [--concurrency 100]

The servers run in a child process (so they do not share the client's event loop); each run
sends ``--messages`` notifications through one transport with ``--concurrency`` in flight
(streams on one HTTP/2 connection) and the figure printed is the median of the runs. The
servers verify every provider token and access token and check every request, so the figure
is a floor for the client. Each run also sends bare httpx POSTs over the same kind of
connection ("httpx alone"), the HTTP/2 client's own cost; the client's CPU time per
notification and the servers' per request are printed beside the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import push_servers

from tidings import model
from tidings.channels.push import apns, fcm, gateway

KEY_ID, TEAM_ID, TOPIC = "KEYID12345", "TEAMID1234", "com.example.app"


def serve(pipe: Connection) -> None:
    """The child: both servers until the parent says stop."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(_serve(pipe))


async def _serve(pipe: Connection) -> None:
    import trustme

    ca = trustme.CA()
    pem, public = push_servers.apns_key()
    apple = push_servers.ApnsServer(public, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC)
    google = push_servers.FcmServer()
    async with (
        push_servers.serving(apple, ca) as apns_at,
        push_servers.serving(google, ca) as fcm_at,
    ):
        account, account_key = push_servers.service_account(f"{fcm_at.url}/token")
        google.trust(account, account_key)
        pipe.send(
            {
                "apns_url": apns_at.url,
                "fcm_url": fcm_at.url,
                "ca_file": apns_at.ca_file,
                "apns_key": pem,
                "account": account,
            }
        )
        loop = asyncio.get_running_loop()
        started = time.process_time()
        await loop.run_in_executor(None, pipe.recv)
        served = len(apple.requests) + len(google.requests)
        pipe.send((time.process_time() - started) / max(1, served) * 1e6)
        # Keep request logs from growing without bound across runs.
        apple.requests.clear()
        google.requests.clear()


def message(n: int, platform: model.PushPlatform) -> model.PushMessage:
    return model.PushMessage(
        event_id=n,
        message_id=f"bench-{n}",
        platform=platform,
        token=f"{n:064x}" if platform == model.PushPlatform.APNS else f"fcm-token-{n}",
        title="Your order shipped",
        body="It arrives on Tuesday.",
        data={"order": str(n)},
        expires_at=int((time.time() + 3600) * 1_000_000),
    )


async def run(
    transport: Any, platform: model.PushPlatform, count: int, concurrency: int
) -> tuple[float, float]:
    """Notifications a second for ``count`` sends with ``concurrency`` in flight, and the
    client's CPU time per notification in microseconds."""
    pending = iter(range(count))
    failures: list[str] = []

    async def lane() -> None:
        for n in pending:
            outcome = await transport.send(message(n, platform))
            if outcome.kind != model.OutcomeKind.DELIVERED:
                failures.append(outcome.reply)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if failures:
        raise SystemExit(f"{len(failures)} of {count} {platform} sends failed: {failures[0]}")
    return count / elapsed, cpu / count * 1e6


class BareClient:
    """httpx alone: an empty POST per "notification" to the FCM server (answered 404), to
    show what the HTTP/2 client costs by itself."""

    name = "httpx"

    def __init__(self, base_url: str, ca_file: str, concurrency: int) -> None:
        self._client = gateway.client(base_url, ca_file=ca_file, timeout=10.0, connections=1)
        self._limiter = gateway.Limiter(concurrency)

    async def send(self, message: model.PushMessage) -> model.Outcome:
        async with self._limiter.slot():
            await self._client.post("/elsewhere", content=b"{}")
        return model.Outcome(model.OutcomeKind.DELIVERED)

    async def aclose(self) -> None:
        await self._client.aclose()


async def measure(
    info: dict[str, Any], args: argparse.Namespace
) -> dict[str, list[tuple[float, float]]]:
    apple = apns.ApnsTransport(
        apns.ApnsConfig(
            key_id=KEY_ID,
            team_id=TEAM_ID,
            topic=TOPIC,
            key=info["apns_key"],
            endpoint=info["apns_url"],
            ca_file=info["ca_file"],
            concurrency=args.concurrency,
        )
    )
    google = fcm.FcmTransport(
        fcm.FcmConfig(
            service_account=info["account"],
            endpoint=info["fcm_url"],
            ca_file=info["ca_file"],
            concurrency=args.concurrency,
        )
    )
    bare = BareClient(info["fcm_url"], info["ca_file"], args.concurrency)
    rates: dict[str, list[tuple[float, float]]] = {"apns": [], "fcm": [], "httpx alone": []}
    try:
        # A warm-up run each: connections, TLS, the first token.
        await run(apple, model.PushPlatform.APNS, 200, args.concurrency)
        await run(google, model.PushPlatform.FCM, 200, args.concurrency)
        await run(bare, model.PushPlatform.FCM, 200, args.concurrency)
        for _ in range(args.runs):
            rates["apns"].append(
                await run(apple, model.PushPlatform.APNS, args.messages, args.concurrency)
            )
            rates["fcm"].append(
                await run(google, model.PushPlatform.FCM, args.messages, args.concurrency)
            )
            rates["httpx alone"].append(
                await run(bare, model.PushPlatform.FCM, args.messages, args.concurrency)
            )
    finally:
        await apple.aclose()
        await google.aclose()
        await bare.aclose()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(child,))
    server.start()
    try:
        info = parent.recv()
        try:
            import uvloop

            rates = uvloop.run(measure(info, args))
        except ImportError:  # pragma: no cover
            rates = asyncio.run(measure(info, args))
    finally:
        parent.send("stop")
        server_cpu = parent.recv() if parent.poll(10) else float("nan")
        server.join(10)
        if server.is_alive():
            server.terminate()
    for name, results in rates.items():
        values = [rate for rate, _ in results]
        spread = ", ".join(f"{v:,.0f}" for v in values)
        cpu = statistics.median(cpu for _, cpu in results)
        print(
            f"{name}: {statistics.median(values):,.0f} notifications/s "
            f"(median of {len(values)} runs of {args.messages}; runs: {spread}); "
            f"client CPU {cpu:,.0f} µs a notification"
        )
    print(f"servers' CPU: {server_cpu:,.0f} µs a request")


if __name__ == "__main__":
    main()
