"""``portal forecasts …``: the pools' renewal forecasts, and the reminders sent by hand.

``list`` prints one line per pool in force (running out first, then ending first);
``show POOL_ID`` the forecast of one pool as JSON (the API's shape: amounts in minor units
beside the currency); ``remind`` sends the due reminders now, as the daily job does (once
each whatever how often it runs). How the forecast is made: docs/FORECAST.md.
"""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.errors import DomainError
from portal.procurement import forecast as forecasting
from portal.procurement.forecast_jobs import pool_reminders_send

_CLI = Actor.system("cli: forecasts")


@click.group("forecasts")
def forecasts() -> None:
    """Renewal forecasts of the licence pools (SPEC 8.3)."""


@forecasts.command("list")
@with_appcontext
def forecasts_list() -> None:
    """Pool, product, ends on, capacity, reserved today, projected at the end, runs out on,
    recommended renewal: tab-separated, running out first."""
    rows = forecasting.forecasts_list(db_session(), actor=_CLI)
    if not rows:
        click.echo("No pool is in force.", err=True)
    for row in rows:
        f = row.forecast
        click.echo(
            f"{row.pool.id}\t{row.pool.product.sku}\t{row.pool.ends_on}\t{row.pool.capacity}\t"
            f"{f.reserved_now}\t{f.at_ends_on}\t{f.runs_out_on or '-'}\t{f.recommended_capacity}"
        )


@forecasts.command("show")
@click.argument("pool_id", type=click.IntRange(1, 2**63 - 1))
@with_appcontext
def forecasts_show(pool_id: int) -> None:
    """One pool's forecast as JSON."""
    try:
        pool, f = forecasting.pool_forecast(db_session(), actor=_CLI, pool_id=pool_id)
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(json.dumps(forecasting.as_json(pool, f), indent=2))


@forecasts.command("remind")
@with_appcontext
def forecasts_remind() -> None:
    """Send the due renewal reminders now (each pool's, once each)."""
    sent = pool_reminders_send(db_session(), actor=_CLI)
    db_session().commit()
    click.echo(f"Reminders sent: {sent}.")
