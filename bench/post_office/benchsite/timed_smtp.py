"""Django's SMTP email backend, noting when each email was accepted.

``send_queued_mail`` writes its log rows in bulk once a batch is sent, so their dates say when
batches ended, not when emails went out. This backend appends the time of each accepted email
(one line, seconds since the epoch) to a file per process in ``BENCH_SEND_TIMES`` (when set), as
Tidings stamps ``sent_at`` on each event after its SMTP 250; ``send_span`` reads them.
"""

import os
import threading
import time
from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend

_lock = threading.Lock()
_files: dict[int, int] = {}


def _note(count: int) -> None:
    folder = os.environ.get("BENCH_SEND_TIMES")
    if not folder or not count:
        return
    line = f"{time.time():.6f}\n".encode() * count
    with _lock:
        fd = _files.get(os.getpid())
        if fd is None:
            path = os.path.join(folder, f"sent-{os.getpid()}.txt")
            fd = _files[os.getpid()] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, line)


class TimedEmailBackend(EmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        _note(sent or 0)
        return sent
