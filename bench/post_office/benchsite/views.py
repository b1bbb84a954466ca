"""The analogue of Tidings' ``POST /api/v1/events``: check the bearer token, validate the JSON,
queue the templated email with ``mail.send`` (committed before the answer), answer 201."""

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from post_office import mail

SENDER = "Tidings Shop <shop@example.com>"
HEADERS = {"Reply-To": "Customer care <care@example.com>"}


def events(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return JsonResponse({"error": "method_not_allowed"}, status=405)
    if request.headers.get("Authorization") != f"Bearer {settings.BENCH_TOKEN}":
        return JsonResponse({"error": "unauthorized"}, status=401)
    try:
        event = json.loads(request.body)
        email = event["recipient"]["email"]
        ctx = event.get("ctx") or {}
        if not isinstance(ctx, dict):
            raise ValueError("ctx")
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "invalid_event"}, status=400)
    queued = mail.send(
        [email],
        SENDER,
        template=event["type"],
        context={"ctx": ctx},
        priority="medium",
        headers=HEADERS,
    )
    return JsonResponse({"id": queued.id}, status=201)
