"""SQLite in WAL mode with synchronous=FULL, as Tidings runs it."""

import os

from .settings_base import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_SQLITE_PATH", "post_office.db"),
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            "timeout": 30,
            # BEGIN IMMEDIATE: writers queue for the lock instead of failing on upgrade.
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        },
    }
}
