"""What the benchmarks share: fresh databases, the portal's setup, gunicorn, load and tables.

Every benchmark measures the portal BESIDE a bare baseline in the same run, on
the same database and the same gunicorn settings, and prints both with their
ratio: the machine is shared and noisy, so the ratio is the figure that counts.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
DEFAULT_POSTGRES = os.environ.get(
    "PORTAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASES = ("sqlite", "postgresql")


# ------------------------------------------------------------------ databases


@dataclass
class Database:
    """A fresh, empty database of one kind: its SQLAlchemy URL and how to reach it raw."""

    kind: str  # sqlite | postgresql
    url: str  # SQLAlchemy URL (postgresql+psycopg://… or sqlite:///…)

    @property
    def dsn(self) -> str:
        """psycopg's conninfo, or the SQLite file's path."""
        if self.kind == "sqlite":
            return self.url[len("sqlite:///") :]
        return "postgresql://" + self.url.split("://", 1)[1]

    def connect(self) -> Any:
        """A plain DB-API connection (psycopg 3 or sqlite3), as a bare baseline uses it."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.dsn, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn
        import psycopg

        return psycopg.connect(self.dsn)

    def placeholder(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"


@contextlib.contextmanager
def fresh_database(kind: str, postgres_url: str = DEFAULT_POSTGRES) -> Iterator[Database]:
    """A new SQLite file in a temporary folder, or a new PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
            yield Database("sqlite", f"sqlite:///{tmp}/bench.sqlite3")
        return
    import psycopg

    server = "postgresql://" + postgres_url.split("://", 1)[1]
    name = f"portal_bench_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server.rpartition("/")
    try:
        yield Database("postgresql", f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def portal_env(db: Database, instance: str) -> dict[str, str]:
    """The environment the portal runs with: production settings, secrets, this database."""
    from cryptography.fernet import Fernet

    return {
        "PORTAL_ENV": "production",
        "PORTAL_SECRET_KEY": secrets.token_hex(32),
        "PORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "PORTAL_DATABASE_URL": db.url,
        "PORTAL_INSTANCE_PATH": instance,
        "PORTAL_OUTBOX_DIR": str(Path(instance) / "outbox"),
        # Several workers: production counts rate limits in Redis (a prefix of the run's
        # own); the load generators' tokens are far past an API client's default limit.
        "PORTAL_REDIS_URL": os.environ.get("PORTAL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "PORTAL_RATELIMIT_KEY_PREFIX": f"bench-{os.getpid()}-{secrets.token_hex(3)}",
        "PORTAL_API_RATE_LIMIT": "1000000 per minute",
    }


def migrated_app(env: dict[str, str]) -> Any:
    """The portal app (for setting up data in this process) on a database migrated to head."""
    os.environ.update(env)
    from flask_migrate import upgrade

    from portal import create_app

    app = create_app()
    with app.app_context():
        upgrade()
    return app


# ------------------------------------------------------------------ gunicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running gunicorn: its port and its master's process id."""

    port: int
    pid: int

    def worker_pids(self) -> list[int]:
        return [pid for pid, ppid in _processes() if ppid == self.pid]


def _processes() -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                yield int(entry.name), int(fields[1])


def cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (those still running)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    return sum(cpu_by_pid(pids).values())


class ServerCPU:
    """CPU time a server used between start() and stop(): its gunicorn workers and the
    PostgreSQL backends of its database (backends that appear meanwhile count whole).

    A figure per request that the other tenants of a shared machine disturb far
    less than requests per second: they take turns on the cores, but each request
    still costs what it costs."""

    def __init__(self, server: Server, db: Database) -> None:
        self.server, self.db = server, db
        self.before: dict[int, float] = {}
        self.seconds = 0.0
        self.database_seconds = 0.0  # of which the PostgreSQL backends'
        self._backends: set[int] = set()

    def _snapshot(self) -> dict[int, float]:
        backends = backend_pids(self.db)
        self._backends.update(backends)
        return cpu_by_pid(self.server.worker_pids() + backends)

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> float:
        after = self._snapshot()
        used = {pid: cpu - self.before.get(pid, 0.0) for pid, cpu in after.items()}
        self.seconds = sum(used.values())
        self.database_seconds = sum(cpu for pid, cpu in used.items() if pid in self._backends)
        return self.seconds


def backend_pids(db: Database) -> list[int]:
    """The PostgreSQL server processes serving the database (none for SQLite)."""
    if db.kind != "postgresql":
        return []
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


@contextlib.contextmanager
def gunicorn(app: str, env: dict[str, str], *, log: Path) -> Iterator[Server]:
    """Serve ``app`` (``wsgi:app`` or ``benchmarks.bare_app:app``) with the project's
    ``gunicorn.conf.py`` on a free port of 127.0.0.1."""
    port = free_port()
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(GUNICORN_CONF),
        "--bind",
        f"127.0.0.1:{port}",
        app,
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(port, process, log)
        yield Server(port, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(port: int, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    # Three workers importing the portal take 45 s and more on two busy shared cores.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({process.returncode}); see {log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
        except OSError:
            time.sleep(0.2)
            continue
        # Every worker imports the app on its own, one answering does not mean all are
        # serving: a worker still importing the portal (several seconds of CPU each) would
        # run beside the measurement, take cores from it and have its CPU counted as the
        # requests'. Wait for every worker's "Worker ready" line (gunicorn.conf.py's
        # post_worker_init).
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({process.returncode}); see {log}")
            if _workers_ready(process.pid, log):
                return
            time.sleep(0.2)
        break
    raise RuntimeError(f"gunicorn did not answer on port {port} with every worker; see {log}")


_READY = re.compile(rb"Worker ready \(pid: (\d+)")


def _workers_ready(master: int, log: Path) -> bool:
    """Whether the gunicorn under ``master`` runs all its workers, each past loading the app."""
    environ = dict(
        entry.split(b"=", 1)
        for entry in Path(f"/proc/{master}/environ").read_bytes().split(b"\0")
        if b"=" in entry
    )  # the server's own environment: a caller may have given it WEB_CONCURRENCY
    expected = int(environ.get(b"WEB_CONCURRENCY") or _gunicorn_conf()["workers"])
    workers = {pid for pid, ppid in _processes() if ppid == master}
    ready = {int(pid) for pid in _READY.findall(log.read_bytes())}
    return len(workers) >= expected and workers <= ready


def _gunicorn_conf() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), namespace)  # noqa: S102
    return namespace


def gunicorn_settings() -> str:
    """The settings both the portal and the bare app are served with (from gunicorn.conf.py)."""
    namespace = _gunicorn_conf()
    keys = ("workers", "worker_class", "threads", "keepalive")
    return ", ".join(f"{k}={namespace[k]}" for k in keys if k in namespace)


# ------------------------------------------------------------------ HTTP


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a keep-alive connection; reconnects once if the server closed it."""
    for attempt in (1, 2):
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def json_headers(token: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


# ------------------------------------------------------------------ figures


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0–1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (it reads in a terminal and pastes into docs/PERFORMANCE.md)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in cells[1:])
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> str:
    """One line about where the figures were measured."""
    mem = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, {mem} RAM, Python {platform.python_version()}, "
        f"load average {load} at start"
    )


def postgres_version(postgres_url: str = DEFAULT_POSTGRES) -> str:
    import psycopg

    with psycopg.connect("postgresql://" + postgres_url.split("://", 1)[1]) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


# ------------------------------------------------------------------ closed-loop load


@dataclass
class LoadResult:
    """Latencies (seconds) per operation, errors by operation and status, and the window."""

    latencies: dict[str, list[float]]
    errors: dict[str, int]
    seconds: float
    requests: int = 0  # all requests sent, warm-up included
    cpu_seconds: float = float("nan")  # the server's, over all requests (see ServerCPU)
    database_cpu_seconds: float = float("nan")  # of which PostgreSQL's backends'

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds * 1000 / self.requests if self.requests else float("nan")

    @property
    def database_cpu_ms_per_request(self) -> float:
        return self.database_cpu_seconds * 1000 / self.requests if self.requests else float("nan")

    def rate(self, op: str | None = None) -> float:
        if op is None:
            return sum(len(v) for v in self.latencies.values()) / self.seconds
        return len(self.latencies.get(op, [])) / self.seconds

    def p(self, op: str, q: float) -> float:
        """Latency quantile in milliseconds."""
        return percentile(self.latencies.get(op, []), q) * 1000

    @classmethod
    def combined(cls, results: Sequence[LoadResult]) -> LoadResult:
        """Several runs of one load as one: their latencies, errors, windows, requests and
        CPU time added up."""
        latencies: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        for result in results:
            for op, values in result.latencies.items():
                latencies.setdefault(op, []).extend(values)
            for op, n in result.errors.items():
                errors[op] = errors.get(op, 0) + n
        return cls(
            latencies,
            errors,
            sum(r.seconds for r in results),
            sum(r.requests for r in results),
            sum(r.cpu_seconds for r in results),
            sum(r.database_cpu_seconds for r in results),
        )

    def in_flight(self, op: str) -> float:
        """Little's law: rate × mean latency; for a closed loop, the number of connections."""
        values = self.latencies.get(op, [])
        return self.rate(op) * sum(values) / len(values) if values else float("nan")


def run_clients(
    target: Any,
    jobs: Sequence[tuple],
    *,
    duration: float,
    warmup: float,
    cpu: ServerCPU | None = None,
) -> LoadResult:
    """Run ``target(job, start, t_warm, t_end)`` in one process per job, all measuring the
    same window; with ``cpu``, also the server's CPU time over the whole run.

    Each returns ``(latencies by op, errors by op, requests sent)``, latencies and
    errors only for requests that started after the warm-up; the window is
    ``duration`` seconds.
    """
    import multiprocessing

    start = time.time() + 1.0  # let every process start before the clock runs
    t_warm, t_end = start + warmup, start + warmup + duration
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(jobs)) as pool:
        if cpu:
            cpu.start()
        parts = pool.starmap(target, [(job, start, t_warm, t_end) for job in jobs])
        if cpu:
            cpu.stop()
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for lat, err, _ in parts:
        for op, values in lat.items():
            latencies.setdefault(op, []).extend(values)
        for op, n in err.items():
            errors[op] = errors.get(op, 0) + n
    result = LoadResult(latencies, errors, duration, sum(part[2] for part in parts))
    if cpu:
        result.cpu_seconds = cpu.seconds
        result.database_cpu_seconds = cpu.database_seconds
    return result


def _get_client(job: tuple, start: float, t_warm: float, t_end: float):
    """One process of :func:`http_load`: a thread per keep-alive connection, each asking
    for the next path as soon as the last is answered (a closed loop, like wrk)."""
    import threading

    port, paths, headers, connections = job
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = [0]
    lock = threading.Lock()

    def ask(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        bad: dict[str, int] = {}
        n, i = 0, offset
        time.sleep(max(0.0, start - time.time()))
        while (began := time.time()) < t_end:
            t0 = time.perf_counter()
            status, _ = request(conn, "GET", paths[i % len(paths)], None, headers)
            elapsed = time.perf_counter() - t0
            n += 1
            i += connections
            if began >= t_warm:
                mine.append(elapsed)
                if status >= 300:
                    bad[f"get {status}"] = bad.get(f"get {status}", 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for key, count in bad.items():
                errors[key] = errors.get(key, 0) + count
            sent[0] += n

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"get": latencies}, errors, sent[0]


def http_load(
    port: int,
    paths: list[str],
    headers: dict[str, str],
    *,
    seconds: float,
    warmup: float,
    processes: int,
    connections: int,
    cpu: ServerCPU | None = None,
) -> LoadResult:
    """GET ``paths`` in turn from ``connections`` keep-alive connections, spread over
    ``processes`` processes (:func:`run_clients`); latencies under the op ``get``.

    Each request is timed by the client itself. (wrk's latencies broke Little's
    law on the shared machines: its mean latency × its rate came to hundreds of
    requests in flight on eight connections; these must come to the number of
    connections, and :meth:`LoadResult.in_flight` shows that they do.)
    """
    per_process = [
        connections // processes + (i < connections % processes) for i in range(processes)
    ]
    jobs = [(port, paths[i::processes], headers, n) for i, n in enumerate(per_process) if n]
    return run_clients(_get_client, jobs, duration=seconds, warmup=warmup, cpu=cpu)
