"""``portal notifications …``: the notification commands (``digest``: a day's digests now)."""

from __future__ import annotations

import datetime as dt

import click
from flask.cli import with_appcontext

from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.notifications.digest import digest_send


@click.group("notifications")
def notifications() -> None:
    """Notifications: the org admins' daily digest."""


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date:
    if value is None:
        return (now_utc() - dt.timedelta(days=1)).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a day (YYYY-MM-DD).") from None


@notifications.command("digest")
@click.option(
    "--day",
    callback=_day,
    metavar="YYYY-MM-DD",
    help="The day (UTC) whose digest to send; default: yesterday, as the daily job does.",
)
@with_appcontext
def notifications_digest(day: dt.date) -> None:
    """Mail each org admin the digest of --day now, as the scheduled job
    notifications.daily_digest does; an admin who got that day's digest gets none again."""
    session = db_session()
    mailed = digest_send(session, actor=Actor.system("cli: notifications digest"), day=day)
    session.commit()
    click.echo(f"{day.isoformat()}: {len(mailed)} digest(s) queued for mail.")
