"""The SMPP transport against node-smpp's SMSC over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests import smsc
from tidings import model
from tidings.channels.sms import gsm, receipt, smpp

DELIVERED = model.OutcomeKind.DELIVERED
RETRY = model.OutcomeKind.RETRY
FAILED = model.OutcomeKind.FAILED


def sms(
    text: str = "Your code is 1234", to: str = "+33 6 12 34 56 78", **kw: Any
) -> model.SmsMessage:
    return model.SmsMessage(event_id=1, reference="ev-1", to=to, text=text, **kw)


@contextlib.asynccontextmanager
async def transport(
    port: int,
    on_receipt: Callable[[receipt.Receipt], Any] | None = None,
    **options: Any,
) -> AsyncIterator[smpp.SmppTransport]:
    settings: dict[str, Any] = {
        "system_id": "tidings",
        "password": "secret",
        "system_type": "tidings",
        "source": "Tidings",
        "timeout": 5.0,
        "reconnect_min": 0.2,
    }
    config = smpp.SmppConfig("127.0.0.1", port, **(settings | options))
    client = smpp.SmppTransport(config, on_receipt)
    try:
        yield client
    finally:
        await client.aclose()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (boundedly) for something the SMSC does on its own schedule."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_bind_and_a_short_gsm_message(tmp_path: pathlib.Path) -> None:
    with smsc.running(tmp_path) as server:
        async with transport(server.port) as client:
            outcome = await client.send(sms("Hello {world} €5"))
    assert outcome.kind is DELIVERED
    assert outcome.provider_id == "msg1"
    assert "msg1" in outcome.reply
    (bind,) = server.pdus("bind_transceiver")
    assert (bind["system_id"], bind["password"], bind["system_type"]) == (
        "tidings",
        "secret",
        "tidings",
    )
    assert bind["interface_version"] == 0x34
    (submit,) = server.pdus("submit_sm")
    assert submit["destination_addr"] == "33612345678"
    assert (submit["dest_addr_ton"], submit["dest_addr_npi"]) == (1, 1)
    assert submit["source_addr"] == "Tidings"
    assert (submit["source_addr_ton"], submit["source_addr_npi"]) == (5, 0)
    assert submit["data_coding"] == 0
    assert submit["esm_class"] == 0
    assert submit["registered_delivery"] == 1
    # node-smpp's own GSM 03.38 decoder reads the text back, escapes included
    assert submit["short_message"]["message"] == "Hello {world} €5"
    assert bytes.fromhex(submit["raw_short_message"]) == gsm.encode_gsm("Hello {world} €5")
    assert server.pdus("unbind"), "the transport unbinds when closed"


async def test_numeric_sender_and_national_number(tmp_path: pathlib.Path) -> None:
    with smsc.running(tmp_path) as server:
        async with transport(server.port, default_region="GB", registered_delivery=False) as c:
            outcome = await c.send(sms(to="020 7946 0958", sender="+447700900123"))
    assert outcome.kind is DELIVERED
    (submit,) = server.pdus("submit_sm")
    assert submit["destination_addr"] == "442079460958"
    assert (submit["source_addr"], submit["source_addr_ton"], submit["source_addr_npi"]) == (
        "447700900123",
        1,
        1,
    )
    assert submit["registered_delivery"] == 0


async def test_long_gsm_message_goes_in_concatenated_parts(tmp_path: pathlib.Path) -> None:
    text = "Order [A-17] shipped ~ track it at example.com/t/17 " * 5
    with smsc.running(tmp_path) as server:
        async with transport(server.port) as client:
            outcome = await client.send(sms(text))
    submits = server.pdus("submit_sm")
    info = gsm.segments(text)
    assert len(submits) == info.count == 2
    assert outcome.kind is DELIVERED
    assert outcome.provider_id == "msg1"
    assert "msg1 msg2" in outcome.reply
    references = set()
    for number, submit in enumerate(submits, start=1):
        assert submit["esm_class"] & 0x40
        assert submit["data_coding"] == 0
        (udh,) = submit["short_message"]["udh"]
        raw = bytes.fromhex(udh)
        assert raw[:2] == b"\x00\x03"  # concatenation, 8-bit reference
        assert raw[3:] == bytes((2, number))
        references.add(raw[2])
    assert len(references) == 1
    assert "".join(s["short_message"]["message"] for s in submits) == text


async def test_long_ucs2_message(tmp_path: pathlib.Path) -> None:
    text = "Привет, ваш заказ готов к выдаче! Код: 1234 — спасибо 🎉 " * 2
    with smsc.running(tmp_path) as server:
        async with transport(server.port) as client:
            outcome = await client.send(sms(text))
    assert outcome.kind is DELIVERED
    submits = server.pdus("submit_sm")
    assert len(submits) == gsm.segments(text).count == 2
    assert {s["data_coding"] for s in submits} == {8}
    parts = [bytes.fromhex(s["raw_short_message"]) for s in submits]
    assert all(len(p) <= 140 for p in parts)
    assert gsm.join(parts, gsm.Encoding.UCS2) == text


async def test_message_payload_option(tmp_path: pathlib.Path) -> None:
    text = "x" * 300
    with smsc.running(tmp_path) as server:
        async with transport(server.port, use_message_payload=True) as client:
            outcome = await client.send(sms(text))
    assert outcome.kind is DELIVERED
    (submit,) = server.pdus("submit_sm")
    assert submit.get("raw_short_message", "") == ""
    assert bytes.fromhex(submit["raw_message_payload"]) == text.encode()


async def test_wrong_password_is_a_clear_error_without_a_retry_storm(
    tmp_path: pathlib.Path,
) -> None:
    with smsc.running(tmp_path) as server:
        async with transport(server.port, password="wrong", reconnect_min=30.0) as client:
            first = await client.send(sms())
            second = await client.send(sms())
    assert first.kind is RETRY
    assert "ESME_RINVPASWD" in first.reply
    assert second.kind is RETRY
    assert "ESME_RINVPASWD" in second.reply
    assert second.retry_after is not None
    assert second.retry_after > 0
    assert len(server.pdus("bind_transceiver")) == 1
    assert server.pdus("submit_sm") == []


async def test_refused_connection_is_a_retry(tmp_path: pathlib.Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with transport(port) as client:
        outcome = await client.send(sms())
    assert outcome.kind is RETRY
    assert "cannot bind" in outcome.reply


async def test_enquire_link_keeps_an_idle_session(tmp_path: pathlib.Path) -> None:
    with smsc.running(tmp_path) as server:
        async with transport(server.port, enquire_link_interval=0.1) as client:
            assert (await client.send(sms())).kind is DELIVERED
            await until(lambda: len(server.pdus("enquire_link")) >= 3, "three enquire_link")
            assert (await client.send(sms())).kind is DELIVERED
    assert {p["session"] for p in server.pdus()} == {1}
    assert len(server.pdus("bind_transceiver")) == 1


@pytest.mark.parametrize(
    ("options", "name", "retry_after"),
    [
        ({"throttle_every": 2}, "ESME_RTHROTTLED", 1.0),
        ({"queue_full_every": 2}, "ESME_RMSGQFUL", 10.0),
    ],
)
async def test_throttling_is_retried_later(
    tmp_path: pathlib.Path, options: dict[str, int], name: str, retry_after: float
) -> None:
    with smsc.running(tmp_path, **options) as server:
        async with transport(server.port) as client:
            first = await client.send(sms())
            second = await client.send(sms())
            third = await client.send(sms())
    assert (first.kind, second.kind, third.kind) == (DELIVERED, RETRY, DELIVERED)
    assert name in second.reply
    assert second.retry_after == retry_after


async def test_invalid_destination_fails(tmp_path: pathlib.Path) -> None:
    with smsc.running(tmp_path, reject={"33612345678": 0x0B}) as server:
        async with transport(server.port) as client:
            outcome = await client.send(sms())
    assert outcome.kind is FAILED
    assert "ESME_RINVDSTADR" in outcome.reply


async def test_invalid_number_fails_before_sending(tmp_path: pathlib.Path) -> None:
    with smsc.running(tmp_path) as server:
        async with transport(server.port) as client:
            outcome = await client.send(sms(to="+33 6 12"))
    assert outcome.kind is FAILED
    assert "invalid phone number" in outcome.reply
    assert server.pdus() == []


async def test_dropped_connection_reconnects(tmp_path: pathlib.Path) -> None:
    # bind is the session's first PDU, the first submit_sm its second: the third is dropped
    with smsc.running(tmp_path, drop_after=3) as server:
        async with transport(server.port) as client:
            assert (await client.send(sms())).kind is DELIVERED
            dropped = await client.send(sms())
            after = await client.send(sms())
    assert dropped.kind is RETRY
    assert "closed the connection" in dropped.reply
    assert after.kind is DELIVERED
    assert len(server.pdus("bind_transceiver")) == 2
    assert [p["session"] for p in server.pdus("submit_sm")] == [1, 1, 2]


@pytest.mark.parametrize("tlvs", [False, True])
@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("DELIVRD", receipt.ReceiptState.DELIVERED),
        ("UNDELIV", receipt.ReceiptState.UNDELIVERABLE),
        ("EXPIRED", receipt.ReceiptState.EXPIRED),
    ],
)
async def test_receipts_reach_the_callback(
    tmp_path: pathlib.Path, stat: str, state: receipt.ReceiptState, tlvs: bool
) -> None:
    got: list[receipt.Receipt] = []

    async def keep(r: receipt.Receipt) -> None:
        got.append(r)

    with smsc.running(tmp_path, receipt=stat, receipt_tlvs=tlvs) as server:
        async with transport(server.port, keep) as client:
            outcome = await client.send(sms())
            await until(lambda: bool(server.pdus("receipt_answered")), "the receipt answered")
    (r,) = got
    assert r.message_id == outcome.provider_id == "msg1"
    assert r.state is state
    assert r.error == ("000" if stat == "DELIVRD" else "001")
    assert f"stat:{stat}" in r.text
    assert server.pdus("receipt_answered")[0]["command_status"] == 0


async def test_a_receipt_not_recorded_is_refused_for_redelivery(tmp_path: pathlib.Path) -> None:
    async def broken(r: receipt.Receipt) -> None:
        raise RuntimeError("database down")

    with smsc.running(tmp_path, receipt="DELIVRD") as server:
        async with transport(server.port, broken) as client:
            assert (await client.send(sms())).kind is DELIVERED
            await until(lambda: bool(server.pdus("receipt_answered")), "the receipt answered")
    assert server.pdus("receipt_answered")[0]["command_status"] == 0x64  # ESME_RX_T_APPN


async def test_hostile_smsc_answer_drops_the_session(tmp_path: pathlib.Path) -> None:
    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\xff\xff\xff\xff" + b"\0" * 12)  # a length no PDU has
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(hostile, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with transport(port) as client:
            outcome = await client.send(sms())
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.kind is RETRY
    assert "out of range" in outcome.reply
