"""Helpers the identity, tenancy, audit and error tests share.

``db_rows`` takes a snapshot of every table, so a test can prove that a refused
request changed nothing at all; ``form_post`` posts a form whose fields carry a
prefix (``invite-email``) with the CSRF token under the form's own name.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from portal.db import db
from tests.conftest import (
    SYSTEM,
    TEST_PASSWORD,
    OrgRef,
    UserRef,
    csrf_token,
    flashes,
    give_second_factor,
    login,
    needs_second_factor,
)

_numbers = itertools.count(1)


@functools.cache
def _test_password_hash() -> str:
    from portal.identity.security import hash_password

    return hash_password(TEST_PASSWORD)


def quick_user(
    app,
    role: str = "member",
    org: OrgRef | None = None,
    *,
    email: str | None = None,
    active: bool = True,
    password: bool = True,
    second_factor: bool | None = None,
) -> UserRef:
    """An account made by the service, with ``TEST_PASSWORD`` hashed once per run (fast);
    council admins and finance get the test authenticator app unless ``second_factor``
    says otherwise."""
    from portal.identity.accounts import user_create
    from portal.identity.models import User
    from portal.tenancy.models import Organisation

    n = next(_numbers)
    email = email or f"q{n}-{role.replace('_', '-')}@{org.slug if org else 'council'}.example"
    with app.app_context():
        user = user_create(
            db.session,
            actor=SYSTEM,
            email=email,
            role=role,
            organisation=db.session.get(Organisation, org.id) if org else None,
            name=f"Quick {n}",
        )
        if password:
            user.password_hash = _test_password_hash()
        user.is_active = active
        db.session.commit()
        assert isinstance(user, User)
        ref = UserRef(user.id, user.email, user.role, user.organisation_id)
        db.session.remove()
    if needs_second_factor(role) if second_factor is None else second_factor:
        give_second_factor(app, ref.id)
    return ref


def client_for(app, role: str, org: OrgRef | None = None):
    """A test client signed in through the real form as a new ``quick_user``."""
    user = quick_user(app, role, org)
    client = app.test_client()
    response = login(client, user)
    assert response.status_code == 302, response.get_data(as_text=True)
    client.user = user
    return client


def db_rows(app) -> dict[str, list[tuple]]:
    """Every row of every table the database has, in a stable order."""
    with app.app_context():
        present = set(sa.inspect(db.engine).get_table_names())
        state: dict[str, list[tuple]] = {}
        with db.engine.connect() as conn:
            for table in db.metadata.sorted_tables:
                if table.name not in present:
                    continue
                rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
                state[table.name] = [tuple(row) for row in rows]
        return state


def row(app, model, id: int) -> dict[str, Any] | None:
    """One row as a dict of its columns (None if it is gone), read fresh."""
    with app.app_context():
        obj = db.session.get(model, id)
        if obj is None:
            return None
        values = {c.key: getattr(obj, c.key) for c in sa.inspect(model).column_attrs}
        db.session.remove()
        return values


def count(app, model, *where) -> int:
    """How many rows of ``model`` match ``where``."""
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def form_post(client, path: str, data: dict[str, Any], *, token_from: str, prefix: str = ""):
    """POST ``data`` with the CSRF token under ``{prefix}-csrf_token`` (or ``csrf_token``)."""
    name = f"{prefix}-csrf_token" if prefix else "csrf_token"
    data = {f"{prefix}-{k}" if prefix else k: v for k, v in data.items()}
    data[name] = csrf_token(client, token_from)
    return client.post(path, data=data)


def messages(response) -> list[str]:
    """Flash messages and field errors, HTML entities decoded."""
    return [html.unescape(m) for m in flashes(response)]


def follow_messages(client, response) -> list[str]:
    """The messages shown on the page a redirect leads to."""
    assert response.status_code == 302, response.status_code
    return messages(client.get(response.headers["Location"]))


def deliver_job(app, job_id: int) -> str:
    """One delivery of a job's message, run here as a worker would; the task's answer.

    ``EagerResult.get()`` is not used: Celery refuses it while its process-wide "inside
    a task" flag is set, and an eager job started by a live-server thread of this
    process (a webhook, a page) sets that flag for every thread while it runs.
    """
    from portal.jobs.queue import TASK_NAME

    result = app.extensions["celery"].tasks[TASK_NAME].apply(args=[job_id])
    result.maybe_throw()
    return result.result


def seat_counts(subscription_id: int) -> tuple[int, int]:
    """(``subscriptions.assigned``, the active seats counted) of a subscription, read
    afresh council-wide; the two must always be equal (migration 0028). Needs an
    application context."""
    from portal.db import council_wide
    from portal.seats.models import SeatAssignment, Subscription

    with council_wide(db.session):
        assigned = db.session.scalar(
            sa.select(Subscription.assigned)
            .where(Subscription.id == subscription_id)
            .execution_options(populate_existing=True)
        )
        active = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(SeatAssignment)
            .where(
                SeatAssignment.subscription_id == subscription_id,
                SeatAssignment.released_at.is_(None),
            )
        )
    return assigned, active


def migration(name: str) -> ModuleType:
    """A migration's module (``0014_usage_rollups.py``), for the statements it exports
    (backfills a test compares with what the code keeps)."""
    path = Path(__file__).resolve().parents[1] / "migrations/versions" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
