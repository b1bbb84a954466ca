"""PostgreSQL through psycopg 3, connections kept open between requests."""

import os
from urllib.parse import urlsplit

from .settings_base import *  # noqa: F403

_url = urlsplit(os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/post_office"))

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "postgres",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
        "CONN_MAX_AGE": None,
    }
}
