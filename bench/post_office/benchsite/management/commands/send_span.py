"""Print the number of emails logged as sent and the seconds from the first such log row to
the last as JSON (``LOG_LEVEL`` 2 writes a row as each email is sent)."""

import json

from django.core.management.base import BaseCommand
from django.db.models import Count, Max, Min
from post_office.models import STATUS, Log


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: object, **options: object) -> None:
        span = Log.objects.filter(status=STATUS.sent).aggregate(
            n=Count("id"), first=Min("date"), last=Max("date")
        )
        seconds = (span["last"] - span["first"]).total_seconds() if span["n"] else 0.0
        self.stdout.write(json.dumps({"sent": span["n"], "seconds": seconds}))
