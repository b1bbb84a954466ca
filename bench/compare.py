"""Tidings against django-post-office: the same templated email queued over HTTP, then sent to
the same smtp-sink, on SQLite and PostgreSQL, on this machine, in one run.

    .venv/bin/python bench/compare.py                       # both databases, 10 s runs
    .venv/bin/python bench/compare.py --db sqlite --seconds 10

django-post-office runs in its own virtualenv, ``bench/.venv-post-office`` (created here on first
use from PyPI: django, django-post-office, psycopg[binary], gunicorn), with the tiny Django site
in ``bench/post_office/``: the ``cartAbandonment`` email of Tidings' example (same subject, HTML
and text, in Django template syntax) and a view that does what Tidings' ``POST /api/v1/events``
does: check a bearer token, validate the JSON, ``mail.send(..., template=..., context=...,
priority='medium')`` (committed before the answer), answer 201.

- ingest: the view served by gunicorn (gthread workers, keep-alive), driven by wrk exactly as
  ``bench/run.py``'s ingest scenario drives ``tidings api`` (same body, 1 thread, same number of
  connections, 2 s warm-up, then the timed run). Rows are counted afterwards.
- delivery: ``manage.py send_queued_mail -p PROCESSES`` sends everything the ingest run queued
  to smtp-sink; Tidings' figure is ``bench/run.py``'s delivery scenario: ``tidings worker
  --processes PROCESSES`` draining everything its ingest run queued to the same sink. The
  ratio compares the rates from the first email accepted by the sink to the last (Tidings'
  ``sent_at``; for post_office the time each email's send returned, noted by the SMTP backend
  in ``benchsite/timed_smtp.py``, since its log rows are written a batch at a time), which
  leaves out each side's start-up (about 0.5 s for Django, 4-5 s for two Tidings worker
  processes): the queues differ in length (each holds what its own ingest took in the same
  time), so counting start-up would penalise the shorter one. The rates over each
  command's whole wall time are printed too. ``bench/run.py``'s e2e scenario (``tidings serve``
  taking POSTs and delivering at once) is run and printed beside them.

post_office renders the template when the email is queued (its default), Tidings when it
delivers; the work per email over both stages is the same.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import run

BENCH = Path(__file__).resolve().parent
SITE = BENCH / "post_office"
VENV = BENCH / ".venv-post-office"
PYTHON = VENV / "bin" / "python"
PACKAGES = ["django", "django-post-office", "psycopg[binary]", "gunicorn"]
TOKEN = "bench-token"


def ensure_venv() -> None:
    if PYTHON.exists():
        return
    print(f"creating {VENV} ({', '.join(PACKAGES)})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], check=True)
    subprocess.run([str(PYTHON), "-m", "ensurepip", "--upgrade"], check=True, capture_output=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", *PACKAGES], check=True)


def versions() -> str:
    code = (
        "import django, gunicorn, psycopg; from importlib.metadata import version; "
        "print(f\"Django {django.get_version()}, django-post-office {version('django-post-office')}"
        ', gunicorn {gunicorn.__version__}, psycopg {psycopg.__version__}")'
    )
    return subprocess.run(
        [str(PYTHON), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


@contextlib.contextmanager
def site_env(db: str, folder: Path) -> Iterator[dict[str, str]]:
    """The environment of a post_office site on a fresh database."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(BENCH_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    with run.fresh_database(db, folder) as url:
        if db == "sqlite":
            env.update(
                DJANGO_SETTINGS_MODULE="benchsite.settings_sqlite",
                BENCH_SQLITE_PATH=url.removeprefix("sqlite:///"),
            )
        else:
            env.update(DJANGO_SETTINGS_MODULE="benchsite.settings_postgresql", BENCH_PG_URL=url)
        manage(env, "migrate", "-v0")
        manage(env, "load_template")
        yield env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(PYTHON), "manage.py", *args], cwd=SITE, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def queue_status(env: dict[str, str]) -> dict[str, int]:
    """Emails by status: "0" sent, "1" failed, "2" queued, "3" requeued."""
    last_line = manage(env, "queue_status").strip().splitlines()[-1]
    return {k: int(v) for k, v in json.loads(last_line).items()}


@contextlib.contextmanager
def gunicorn(env: dict[str, str], folder: Path, workers: int, threads: int) -> Iterator[str]:
    port = run.free_port()
    log = folder / f"gunicorn-{port}.log"
    command = [
        str(VENV / "bin" / "gunicorn"),
        "benchsite.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        f"--workers={workers}",
        "--worker-class=gthread",
        f"--threads={threads}",
        "--keep-alive=75",
        "--backlog=2048",
        "--log-level=warning",
        f"--chdir={SITE}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=SITE, stdout=out, stderr=out)
    try:
        run.wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class PostOffice:
    ingest: float
    ingest_detail: str
    delivery: float
    delivery_wall: float
    delivery_detail: str


def post_office(db: str, folder: Path, seconds: float, args: argparse.Namespace) -> PostOffice:
    with site_env(db, folder) as env:
        with gunicorn(env, folder, args.po_workers, args.po_threads) as url:
            script = run.post_script(folder, TOKEN)
            target = url + "/events"
            run.wrk(script, target, 2, warm_up=False)
            before = sum(queue_status(env).values())
            result = run.wrk(script, target, seconds, warm_up=False)
            stored = sum(queue_status(env).values()) - before
        ingest_detail = (
            f"{result.requests} requests, {stored} rows stored, {result.errors} non-2xx; "
            f"latency p50 {result.p50}, p99 {result.p99} (wrk -t1 -c{run.CONNECTIONS}; gunicorn "
            f"gthread {args.po_workers} workers × {args.po_threads} threads)"
        )
        if stored < result.requests - result.errors:
            ingest_detail += f" — MISSING {result.requests - result.errors - stored} rows"
        queued = queue_status(env).get("2", 0)
        times = folder / f"po-sent-{db}"
        times.mkdir()
        with run.smtp_sink() as sink:
            env = {**env, "BENCH_SMTP_PORT": str(sink), "BENCH_SEND_TIMES": str(times)}
            start = time.perf_counter()
            manage(
                env, "send_queued_mail", f"--processes={args.po_processes}", f"-L{folder}/po-lock"
            )
            took = time.perf_counter() - start
        status = queue_status(env)
        span = json.loads(manage(env, "send_span").strip().splitlines()[-1])
    sent = status.get("0", 0)
    active = ratio(span["sent"], span["seconds"])
    delivery_detail = (
        f"{sent}/{queued} queued emails sent to smtp-sink, {active:,.0f}/s from the first "
        f"accepted to the last ({span['sent']} timed by the SMTP backend), "
        f"{sent / took:,.0f}/s over the {took:.1f} s wall time of "
        f"send_queued_mail -p {args.po_processes} ({args.po_threads_send} threads a process, "
        f"batches of {args.po_batch}; queue filled beforehand, nothing else running)"
    )
    if status.get("1") or status.get("3"):
        delivery_detail += f"; failed {status.get('1', 0)}, requeued {status.get('3', 0)}"
    return PostOffice(result.rate, ingest_detail, active, sent / took, delivery_detail)


def ratio(a: float, b: float) -> float:
    """a / b, or NaN when b is 0 (nothing sent, nothing measured)."""
    return a / b if b else float("nan")


def number(value: str) -> float:
    found = re.match(r"[\d,.]+", value)
    return float(found.group(0).replace(",", "")) if found else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed runs")
    parser.add_argument("--po-workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--po-threads", type=int, default=4, help="gunicorn threads a worker")
    parser.add_argument("--po-processes", type=int, default=2, help="send_queued_mail -p")
    parser.add_argument("--po-threads-send", type=int, default=8, help="THREADS_PER_PROCESS")
    parser.add_argument("--po-batch", type=int, default=1000, help="post_office BATCH_SIZE")
    args = parser.parse_args()
    ensure_venv()
    os.environ["BENCH_PO_THREADS"] = str(args.po_threads_send)
    os.environ["BENCH_PO_BATCH"] = str(args.po_batch)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tidings-compare-") as tmp:
        folder = Path(tmp)
        for db in args.db.split(","):
            ingest = run.scenario_ingest(db, folder, args.seconds)
            print(f"Tidings ingest [{db}]: {ingest.value} — {ingest.detail}", flush=True)
            e2e = run.scenario_e2e(db, folder, args.seconds)
            print(f"Tidings e2e [{db}]: {e2e.value} — {e2e.detail}", flush=True)
            delivery = run.scenario_delivery(db, folder, args.seconds, args.po_processes)
            print(f"Tidings delivery [{db}]: {delivery.value} — {delivery.detail}", flush=True)
            po = post_office(db, folder, args.seconds, args)
            print(f"post_office ingest [{db}]: {po.ingest:,.0f}/s — {po.ingest_detail}", flush=True)
            print(f"post_office delivery [{db}]: {po.delivery:,.0f}/s — {po.delivery_detail}")
            tidings_ingest, tidings_e2e = number(ingest.value), number(e2e.value)
            tidings_wall, tidings_active = delivery.figures["wall"], delivery.figures["active"]
            lines.append(
                f"| ingest (POST → committed, 201) | {db} | {tidings_ingest:,.0f} events/s | "
                f"{po.ingest:,.0f} emails/s | **{ratio(tidings_ingest, po.ingest):.1f}×** |"
            )
            lines.append(
                f"| delivery to smtp-sink, first sent to last | {db} | "
                f"{tidings_active:,.0f} emails/s | {po.delivery:,.0f} emails/s | "
                f"**{ratio(tidings_active, po.delivery):.1f}×** |"
            )
            lines.append(
                f"| delivery, the command's wall time (start-up included) | {db} | "
                f"{tidings_wall:,.0f} emails/s | {po.delivery_wall:,.0f} emails/s | "
                f"{ratio(tidings_wall, po.delivery_wall):.1f}× |"
            )
            lines.append(
                f"| end to end (Tidings taking POSTs and delivering at once) against "
                f"post_office's delivery alone | {db} | {tidings_e2e:,.0f} emails/s | "
                f"{po.delivery:,.0f} emails/s | {ratio(tidings_e2e, po.delivery):.1f}× |"
            )
    print(f"\nMachine: {run.machine()}; post_office side: {versions()}\n")
    print("| work | database | Tidings | django-post-office | Tidings / post_office |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
