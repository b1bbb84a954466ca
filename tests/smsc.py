"""The node-smpp SMSC in ``tests/peers/smsc`` (shares no code with Tidings), started on
127.0.0.1 with a free port, and the PDUs it received, read back from its JSON-lines log."""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

PEER = pathlib.Path(__file__).resolve().parent / "peers" / "smsc"


class Smsc:
    """A running SMSC: its port and what it logged."""

    def __init__(self, port: int, log: pathlib.Path):
        self.port = port
        self.log = log

    def pdus(self, command: str | None = None) -> list[dict[str, Any]]:
        """Every PDU received so far (of ``command`` only, if given), in order."""
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [e for e in entries if command is None or e.get("command") == command]


@contextlib.contextmanager
def running(tmp_path: pathlib.Path, **options: Any) -> Iterator[Smsc]:
    """Start the SMSC with ``options`` (see server.js) and stop it at the end."""
    node = shutil.which("node")
    if node is None or not (PEER / "node_modules" / "smpp").is_dir():
        pytest.fail("the test SMSC needs node and `npm ci --prefix tests/peers/smsc`")
    # A name of its own: an SMSC logs nothing until its first PDU, so counting the files
    # would give two SMSCs started together the same log.
    log = tmp_path / f"smsc-{uuid.uuid4().hex[:12]}.jsonl"
    config = {"port": 0, "log": str(log)} | options
    process = subprocess.Popen(
        [node, str(PEER / "server.js"), json.dumps(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening "), f"the SMSC did not start: {line!r}"
        yield Smsc(int(line.split()[1]), log)
    finally:
        process.terminate()
        process.wait(timeout=10)
