"""Renewal reminders to council staff (issue 16), a scheduled job.

Once a day, for every pool in force: 60 and 30 days before its ``ends_on``, and when it
is forecast to run out within 30 days, council admins and finance are told once (in the
portal and by mail, as they chose: the notifications' "council work" group). Each
reminder is recorded in ``pool_reminders`` under (pool, kind, ends_on) before anyone is
told, in the same transaction, so a job run twice, or two workers at once, remind once;
a pool whose term is extended has a new ``ends_on`` and is reminded again for it. A day
missed (the workers down) is caught up: the rule is "at most 60 days left", not "60 days
left today".
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _
from portal.kernel.policy import Action
from portal.notifications.kinds import Group, Kind, register
from portal.notifications.services import notify_council_staff
from portal.procurement import forecast as forecasting
from portal.procurement.forecast_models import PoolReminder

log = logging.getLogger("portal.procurement")

POOL_ENDING = "procurement.pool_ending"
POOL_RUNNING_OUT = "procurement.pool_running_out"
CHECK_EVERY = dt.timedelta(days=1)

register(
    Kind(
        name=POOL_ENDING,
        group=Group.OPERATIONS,
        title=lambda p: _(
            "The %(product)s pool ends in %(days)s days", product=p["product"], days=p["days"]
        ),
        body=lambda p: _(
            "Pool %(pool)s of %(product)s (%(capacity)s seats) ends on %(ends_on)s. "
            "The forecast recommends renewing %(recommended)s seats.",
            **p,
        ),
    )
)
register(
    Kind(
        name=POOL_RUNNING_OUT,
        group=Group.OPERATIONS,
        title=lambda p: _("The %(product)s pool is running out", product=p["product"]),
        body=lambda p: _(
            "Pool %(pool)s of %(product)s is forecast to run out of seats on %(runs_out_on)s "
            "(%(reserved)s of %(capacity)s seats reserved today, %(waiting)s waiting).",
            **p,
        ),
    )
)


def _claim(session: Session, *, pool_id: int, kind: str, ends_on: dt.date, **extra) -> bool:
    """Record the reminder unless it was sent; whether this call recorded it."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(PoolReminder)
        .values(pool_id=pool_id, kind=kind, ends_on=ends_on, sent_at=now_utc(), **extra)
        .on_conflict_do_nothing(index_elements=["pool_id", "kind", "ends_on"])
        .returning(PoolReminder.id)
    )
    return session.scalar(statement) is not None


def pool_reminders_send(session: Session, *, actor: Actor, today: dt.date | None = None) -> int:
    """Send the due reminders (see the module's docstring); how many were sent."""
    policy.require(actor, Action.JOB_RUN)
    day = today or now_utc().date()
    sent = 0
    for row in forecasting.forecasts_list(session, actor=actor, today=day):
        pool, f = row.pool, row.forecast
        if pool.starts_on > day:
            continue
        link = f"/council/forecasts/{pool.id}"
        common = {
            "pool": pool.id,
            "product": pool.product.name,
            "capacity": pool.capacity,
            "ends_on": pool.ends_on.isoformat(),
        }
        days_left = f.days_left
        due = [k for k in forecasting.REMINDER_DAYS if 0 <= days_left <= k]
        if due:
            # Only the nearest: a pool found with 20 days left is told "30", not "60" too.
            kind = f"ends_in_{min(due)}"
            if _claim(session, pool_id=pool.id, kind=kind, ends_on=pool.ends_on):
                notify_council_staff(
                    session,
                    kind=POOL_ENDING,
                    key=f"pool:{pool.id}:{kind}:{pool.ends_on.isoformat()}",
                    params={**common, "days": days_left, "recommended": f.recommended_capacity},
                    link=link,
                    roles=(Role.COUNCIL_ADMIN, Role.FINANCE),
                    actor=actor,
                )
                sent += 1
        if (
            f.runs_out_on is not None
            and (f.runs_out_on - day).days <= forecasting.RUN_OUT_SOON
            and _claim(
                session,
                pool_id=pool.id,
                kind="runs_out",
                ends_on=pool.ends_on,
                runs_out_on=f.runs_out_on,
            )
        ):
            notify_council_staff(
                session,
                kind=POOL_RUNNING_OUT,
                key=f"pool:{pool.id}:runs_out:{pool.ends_on.isoformat()}",
                params={
                    **common,
                    "runs_out_on": f.runs_out_on.isoformat(),
                    "reserved": f.reserved_now,
                    "waiting": f.waiting,
                },
                link=link,
                roles=(Role.COUNCIL_ADMIN, Role.FINANCE),
                actor=actor,
            )
            sent += 1
    if sent:
        log.info("pool reminders sent", extra={"reminders": sent})
    return sent


@job("procurement.pool_reminders", max_attempts=3, backoff=(300, 1800), every=CHECK_EVERY)
def pool_reminders_job(session: Session, *, actor: Actor) -> None:
    """Remind council staff of pools ending in 60 and 30 days or running out soon (once each)."""
    pool_reminders_send(session, actor=actor)
