"""``portal payments collect`` (alias ``retry``): the job cron runs every few minutes."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from portal.db import db_session
from portal.kernel.scope import Scope
from portal.payments.accounts import current_gateway
from portal.payments.jobs import collect_due
from portal.payments.selectors import collections_needing_attention


@click.group("payments")
def payments() -> None:
    """Card payments through Stripe."""


@payments.command("collect")
@with_appcontext
def collect() -> None:
    """Make every due payment attempt (first tries, retries, lost answers) and apply stored events.

    Safe to run often and in parallel: each attempt is claimed under a row lock
    and a lease, and a request sent again carries the same idempotency key.
    """
    gateway = current_gateway()
    if gateway is None:
        raise click.ClickException("Stripe is not configured: set PORTAL_STRIPE_API_KEY.")
    counts = collect_due(db_session(), gateway=gateway)
    if not counts:
        click.echo("Nothing was due.")
    for result, count in sorted(counts.items()):
        click.echo(f"{result}: {count}")
    for row in collections_needing_attention(db_session(), scope=Scope.council()):
        click.echo(
            f"needs attention: invoice {row.invoice.number} ({row.collection.status}, "
            f"{row.collection.attempts} attempts): {row.collection.last_error or ''}".rstrip(": ")
        )
    db_session().rollback()


payments.add_command(collect, "retry")
