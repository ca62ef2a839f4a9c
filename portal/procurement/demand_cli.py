"""``portal demand …``: the demand board and the product requests, read-only.

Answering, merging and ordering are done on the pages (a council admin signed in) so
each is a person's decision in the audit log. One line per row, tab-separated.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.errors import DomainError
from portal.procurement import demand as service
from portal.procurement.models import ProductRequestState

_CLI = Actor.system("cli: demand")


@click.group("demand")
def demand() -> None:
    """What members ask for and use, per product (SPEC 8.3)."""


@demand.command("board")
@click.option("--sort", type=click.Choice(service.SORTS), default="pressure", show_default=True)
@with_appcontext
def demand_board(sort: str) -> None:
    """One line per product: SKU, pressure, waitlisted, oldest wait (days), seat requests,
    product requests (seats), reserved/capacity, assigned, trend."""
    rows = service.demand_board(db_session(), _CLI, sort=sort)
    if not rows:
        click.echo("No products.", err=True)
    for r in rows:
        waited = "-" if r.waiting_days is None else f"{r.waiting_days}d"
        click.echo(
            f"{r.product.sku}\tpressure {r.pressure}\twaitlisted {r.waitlisted}\t{waited}\t"
            f"seat requests {r.seat_requests}\t"
            f"product requests {r.product_requests} ({r.requested_seats} seats)\t"
            f"reserved {r.reserved}/{r.capacity}\tassigned {r.assigned}\t"
            f"trend {' '.join(str(v) for v in r.trend)} {r.direction}"
        )


@demand.command("requests")
@click.option(
    "--state", type=click.Choice([s.value for s in ProductRequestState]), help="Only this state."
)
@with_appcontext
def demand_requests(state: str | None) -> None:
    """Requests for products not in the catalogue, newest first: id, state, organisation,
    product, vendor, seats, the primary of a merged one."""
    try:
        rows = service.product_requests_list(db_session(), _CLI, state=state, limit=None)
    except DomainError as error:  # pragma: no cover (the choice refuses unknown states)
        raise click.ClickException(error.detail) from None
    if not rows:
        click.echo("No product requests.", err=True)
    for r in rows:
        merged = f"\tmerged into #{r.merged_into_id}" if r.merged_into_id else ""
        click.echo(
            f"#{r.id}\t{r.state.value}\t{r.organisation.slug}\t{r.product_name}\t"
            f"{r.vendor_name}\t{r.seats} seats{merged}"
        )
