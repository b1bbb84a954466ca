"""What a process does at start: a worker process, started by a supervisor, imports neither the
API's libraries nor the migrations' (~0.7 and ~0.5 s of start-up on a 2-core machine), and no
module does slow work when imported."""

from __future__ import annotations

import subprocess
import sys

_PACKAGES = "import sys\nprint(*sorted({m.split('.')[0] for m in sys.modules}))"


def python(code: str) -> str:
    """What a fresh interpreter running ``code`` prints."""
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_a_worker_process_starts_without_the_api_and_the_migrations() -> None:
    loaded = set(python(f"import tidings.supervisor\n{_PACKAGES}").split())
    assert "tidings" in loaded
    assert {"litestar", "alembic", "sqlalchemy"} & loaded == set()


def test_the_api_and_the_migrations_are_loaded_where_they_are_used() -> None:
    code = f"from tidings.api import asgi\nfrom tidings.store import migrate\n{_PACKAGES}"
    assert {"litestar", "alembic", "sqlalchemy"} <= set(python(code).split())


def test_importing_the_operators_hashes_no_password() -> None:
    # One argon2 hash is ~0.2 s of CPU: the dummy one is made at the first sign-in.
    code = "import tidings.operators as o\nprint(o._dummy_hash.cache_info().currsize)"
    assert python(code).split() == ["0"]
