"""Create the ``cartAbandonment`` EmailTemplate from ``templates/cartAbandonment/``."""

from pathlib import Path

from django.core.management.base import BaseCommand
from post_office.models import EmailTemplate

FOLDER = Path(__file__).resolve().parents[3] / "templates" / "cartAbandonment"


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: object, **options: object) -> None:
        EmailTemplate.objects.update_or_create(
            name="cartAbandonment",
            language="",
            defaults={
                "subject": (FOLDER / "subject.txt").read_text().strip(),
                "content": (FOLDER / "email.txt").read_text(),
                "html_content": (FOLDER / "email.html").read_text(),
            },
        )
