"""The inbound SMTP listener: bounces sent to Tidings by mail (aiosmtpd, on the App's loop).

Point the MX (or a transport map) of the bounce address at ``bounce_smtp_host:port``: every
message it takes, whatever its envelope, goes to :func:`tidings.bounces.process`. Replies:
``250`` once processed (a message that is not a bounce is accepted and dropped, so the sending
MTA does not bounce the bounce), ``552`` over ``bounce_max_bytes`` (aiosmtpd refuses it
while it arrives), ``451`` while the database is unavailable (the MTA tries again later).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiosmtpd.smtp import SMTP

from tidings import bounces
from tidings.settings import Settings
from tidings.store.database import Database, Unavailable

log = logging.getLogger("tidings.inbound")


class BounceHandler:
    """An aiosmtpd handler feeding each message to :func:`tidings.bounces.process`."""

    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.settings = settings

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Process the message; the reply says whether to try again."""
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else str(content).encode()
        try:
            handled = await bounces.process(
                self.db, self.settings, raw, envelope_to=list(envelope.rcpt_tos)
            )
        except Unavailable as exc:
            log.warning("bounce not processed, the database is unavailable: %s", exc)
            return "451 4.3.0 Temporarily unable to process the message, try again later"
        except Exception:
            log.exception("bounce not processed")
            return "451 4.3.0 Temporarily unable to process the message"
        if not handled.report.is_bounce:
            log.info("inbound message dropped: %s", handled.report.reason)
            return "250 2.0.0 Accepted (not a bounce)"
        return f"250 2.0.0 Accepted ({handled.action})"


class Listener:
    """A listening aiosmtpd server; :meth:`aclose` stops it."""

    def __init__(self, server: asyncio.Server):
        self.server = server

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop listening (connections in progress are cut)."""
        self.server.close()
        await self.server.wait_closed()


async def start(db: Database, settings: Settings) -> Listener:
    """Listen on ``bounce_smtp_host:bounce_smtp_port``."""
    handler = BounceHandler(db, settings)

    def protocol() -> SMTP:
        return SMTP(
            handler,
            hostname=socket.getfqdn(),
            ident="Tidings bounce listener",
            data_size_limit=settings.bounce_max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=60,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        protocol, settings.bounce_smtp_host, settings.bounce_smtp_port
    )
    listener = Listener(server)
    log.info("bounce listener on %s:%d", settings.bounce_smtp_host, listener.port)
    return listener
