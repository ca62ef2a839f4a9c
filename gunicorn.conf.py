"""gunicorn settings for the portal (``gunicorn wsgi:app`` reads this file from here).

The benchmarks serve the portal and their bare baseline with these same settings.
Environment variables override them: ``WEB_CONCURRENCY`` (worker processes),
``GUNICORN_THREADS`` (threads per worker), ``PORTAL_BIND``.
"""

import gc
import os

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
# Python code holds the GIL, so processes are what use the cores; one per core and
# one more to keep a core busy while another worker waits for the database.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) + 1))
# gthread keeps HTTP connections alive (the sync worker closes each one); a few
# threads overlap one request's database wait with another's Python.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 2))
keepalive = 30
# A batch of 10,000 usage events is a few MB and well under a second; leave room.
timeout = 60
accesslog = None
# Forwarded headers are believed from the configured proxies only (never assumed):
# gunicorn would otherwise take X-Forwarded-Proto from 127.0.0.1. The app reads the
# same variable for X-Forwarded-For (portal.ratelimit.TrustedProxies).
forwarded_allow_ips = os.environ.get("PORTAL_TRUSTED_PROXIES", "")


def on_starting(server):
    """Refuse a contradiction: PORTAL_SINGLE_PROCESS=1 (limits counted in memory) with
    more than one worker would let each worker count its own share of a limit.
    Empty PROMETHEUS_MULTIPROC_DIR, so that /metrics starts from this server's start."""
    _empty_metrics_folder()
    flag = os.environ.get("PORTAL_SINGLE_PROCESS", "").strip().lower()
    if (
        flag in ("1", "true", "yes", "on")
        and not os.environ.get("PORTAL_REDIS_URL")
        and server.cfg.workers > 1
    ):
        raise SystemExit(
            f"PORTAL_SINGLE_PROCESS is set but gunicorn would start {server.cfg.workers} "
            "workers: rate limits need PORTAL_REDIS_URL when more than one process serves"
        )


# ---------------------------------------------------------------- metrics of several workers
# With PROMETHEUS_MULTIPROC_DIR set (an existing folder, in the environment before gunicorn
# starts), each worker keeps its metrics in files there and /metrics adds every worker's up
# (portal.observability). The folder is emptied at start; a worker that exits is marked so.


def _empty_metrics_folder():
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    if not os.path.isdir(folder):
        raise SystemExit(f"PROMETHEUS_MULTIPROC_DIR={folder} is not a folder: create it first")
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


def post_worker_init(worker):
    """A line per worker once it has loaded the app and is about to accept: the operator
    (and the tests that start several workers) can tell that every worker is serving.

    First the objects of the loaded app (modules, routes, models, templates' code: some
    300,000 the garbage collector tracks, all living as long as the worker) are frozen, so
    that a full collection, which a request building many objects sets off, walks only
    what requests made (docs/PERFORMANCE.md, "usage ingest and the garbage collector")."""
    gc.collect()
    gc.freeze()
    worker.log.info(
        "Worker ready (pid: %s; %s objects of the app frozen)", worker.pid, gc.get_freeze_count()
    )


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
