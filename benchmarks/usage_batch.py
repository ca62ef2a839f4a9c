"""Where a small usage batch's time goes: ``POST /api/v1/usage`` in this process, on the
pages-at-scale database, with the soak's batches (issue 13; docs/PERFORMANCE.md).

The soak (``benchmarks.soak``) measures a 100-event batch's latency through gunicorn; this
reads the same request in one process, without the HTTP server, so that its parts can be
told apart: per batch, the wall and CPU time, the time in each step of
:func:`portal.metering.ingest.usage_ingest` and the commit, and the SQL statements sent
through SQLAlchemy with their time. ``--profile`` adds cProfile's top functions.

    python -m benchmarks.usage_batch [--batches 300] [--batch 100] [--profile]

It needs ``portal_scale`` (``python -m benchmarks.scale --scale 1 --load-only``) and adds
``--batches`` × ``--batch`` events to ``scale-big`` (as the soak does).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import secrets
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks import common, scale, soak

#: The steps of ``usage_ingest`` timed on their own (functions of portal.metering.ingest).
STEPS = (
    "decode_batch",
    "_load_refs",
    "subscription_terms",
    "organisation_people",
    "_insert",  # with the vendor's day of reporting health when every key is new
)


def _timed(spent: dict[str, float], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - began

    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches timed")
    parser.add_argument("--batch", type=int, default=100, help="events per batch")
    parser.add_argument("--warm-up", type=int, default=20, help="batches sent first, not timed")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--database", default="")
    parser.add_argument("--postgres-url", default=common.DEFAULT_POSTGRES)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = parser.parse_args(argv)
    print(f"Machine: {common.machine()}", flush=True)
    name = scale.scale_database(args)
    owner_env = scale._fixed_env(name, args.postgres_url, tempfile.mkdtemp(prefix="portal-bench-"))
    if not scale._loaded(scale._dsn(args.postgres_url, name), scale.Sizes(args.scale)):
        print(f"{name} is not loaded: run python -m benchmarks.scale --scale {args.scale:g}")
        return 2
    env = scale.as_application(owner_env, args.postgres_url)
    env["PORTAL_API_RATE_LIMIT"] = "100000000 per minute"
    info = soak.setup(env, args)
    os.environ.update(env)

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from portal import create_app
    from portal.db import db
    from portal.metering import ingest

    app = create_app()
    scale.quiet(app)
    statements: list[tuple[float, str]] = []
    with app.app_context():
        engine = db.engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        conn.info["benchmark_began"] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        took = time.perf_counter() - conn.info["benchmark_began"]
        statements.append((took, " ".join(statement.split())[:70]))

    spent: dict[str, float] = defaultdict(float)
    for step in STEPS:
        setattr(ingest, step, _timed(spent, step, getattr(ingest, step)))
    Session.commit = _timed(spent, "commit", Session.commit)  # type: ignore[method-assign]

    client = app.test_client()
    headers = {
        "Authorization": f"Bearer {info['tokens']['vendor']}",
        "Content-Type": "application/json",
    }
    info["batch"] = args.batch
    run = secrets.token_hex(4)

    def body(number: int) -> str:
        return json.dumps({"events": soak.usage_events(info, f"batch-{run}-{number}", number)})

    for number in range(args.warm_up):
        answer = client.post("/api/v1/usage", data=body(number), headers=headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    bodies = [body(args.warm_up + n) for n in range(args.batches)]
    statements.clear()
    spent.clear()
    profile = cProfile.Profile() if args.profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profile:
        profile.enable()
    for text in bodies:
        answer = client.post("/api/v1/usage", data=text, headers=headers)
        assert answer.status_code == 200 and answer.json["accepted"] == args.batch, answer.json
    if profile:
        profile.disable()
    n = args.batches
    wall_ms = (time.perf_counter() - wall) / n * 1000
    cpu_ms = (time.process_time() - cpu) / n * 1000
    print(f"{n} batches of {args.batch} events, in this process (the Flask test client)")
    print(f"per batch: {wall_ms:.1f} ms wall, {cpu_ms:.1f} ms CPU (this process)")
    print("| step | ms per batch |\n|---|---|")
    for step in (*STEPS, "commit"):
        print(f"| {step} | {spent[step] / n * 1000:.2f} |")
    by_statement: dict[str, list[float]] = defaultdict(list)
    for took, text in statements:
        by_statement[text].append(took)
    print(f"\nSQLAlchemy statements per batch: {len(statements) / n:.1f}")
    print("| ms per batch | per batch | statement |\n|---|---|---|")
    for text, times in sorted(by_statement.items(), key=lambda item: -sum(item[1])):
        print(f"| {sum(times) / n * 1000:.2f} | {len(times) / n:.1f} | `{text}` |")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
