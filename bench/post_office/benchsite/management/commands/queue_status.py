"""Print the number of emails by status as JSON (0 sent, 1 failed, 2 queued, 3 requeued)."""

import json

from django.core.management.base import BaseCommand
from django.db.models import Count
from post_office.models import Email


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: object, **options: object) -> None:
        rows = Email.objects.values("status").annotate(n=Count("id"))
        self.stdout.write(json.dumps({str(r["status"]): r["n"] for r in rows}))
