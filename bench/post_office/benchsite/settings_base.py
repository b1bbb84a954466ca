"""The smallest Django site that queues post_office emails from a view and sends them by SMTP.

Settings shared by both databases; ``settings_sqlite`` and ``settings_postgresql`` add the
database. Everything comes from the environment set by ``bench/compare.py``.
"""

import os

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "benchsite.urls"
WSGI_APPLICATION = "benchsite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["post_office", "benchsite"]
MIDDLEWARE: list[str] = []  # no sessions, no CSRF: the view is an API endpoint
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

# Bearer token checked by the view, as Tidings checks its API key.
BENCH_TOKEN = os.environ.get("BENCH_TOKEN", "bench-token")

# Delivery: Django's SMTP backend to smtp-sink (plain SMTP, no TLS, like Tidings' e2e run).
EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))
EMAIL_USE_TLS = False
DEFAULT_FROM_EMAIL = "Tidings Shop <shop@example.com>"

# post_office reads its template through this cache rather than the database on each send.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "post_office": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}

POST_OFFICE = {
    # Django's SMTP backend, noting the time of each accepted email (benchsite/timed_smtp.py).
    "BACKENDS": {"default": "benchsite.timed_smtp.TimedEmailBackend"},
    "DEFAULT_PRIORITY": "medium",
    # send_queued_mail: each process takes its share of a batch and sends it over this many
    # threads, each with its own kept-open SMTP connection.
    "BATCH_SIZE": int(os.environ.get("BENCH_PO_BATCH", "1000")),
    "THREADS_PER_PROCESS": int(os.environ.get("BENCH_PO_THREADS", "8")),
    # 2 (the default) writes a Log row per sent email, as Tidings writes a delivery row.
    "LOG_LEVEL": 2,
    "MESSAGE_ID_ENABLED": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"post_office": {"handlers": ["null"], "level": "WARNING", "propagate": False}},
}
