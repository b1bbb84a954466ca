"""Print how many emails the timed backend saw accepted and the seconds from the first to the
last, as JSON (read from the files ``benchsite.timed_smtp`` wrote to ``BENCH_SEND_TIMES``)."""

import json
import os
from pathlib import Path

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: object, **options: object) -> None:
        times = [
            float(line)
            for path in Path(os.environ["BENCH_SEND_TIMES"]).glob("sent-*.txt")
            for line in path.read_text().split()
        ]
        seconds = max(times) - min(times) if times else 0.0
        self.stdout.write(json.dumps({"sent": len(times), "seconds": seconds}))
