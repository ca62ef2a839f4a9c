"""``portal purchase-orders …``: list orders, show one, list vendor invoice mismatches.

Read-only: drafting and the moves are done on the pages and through the API (approvals
need a person signed in). Amounts are printed in minor units beside the currency, as
the exports do.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.errors import DomainError
from portal.procurement import purchase_orders as service
from portal.procurement.models import PurchaseOrderState

_CLI = Actor.system("cli: purchase-orders")


@click.group("purchase-orders")
def purchase_orders() -> None:
    """Purchase orders to vendors (SPEC 8.3)."""


@purchase_orders.command("list")
@click.option(
    "--state", type=click.Choice([s.value for s in PurchaseOrderState]), help="Only this state."
)
@click.option("--vendor", "slug", help="Only this vendor's (its slug).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@with_appcontext
def purchase_orders_list(state: str | None, slug: str | None, limit: int) -> None:
    """One line per order, newest first: number (or draft #id), state, vendor, term, total."""
    session = db_session()
    try:
        vendor_id = vendor_by_slug(session, slug, field="vendor").id if slug else None
        orders = service.purchase_orders_list(
            session, _CLI, state=state, vendor_id=vendor_id, limit=limit
        )
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    if not orders:
        click.echo("No purchase orders.", err=True)
    for po in orders:
        click.echo(
            f"{po.number or f'draft #{po.id}'}\t{po.state.value}\t{po.vendor.slug}\t"
            f"{po.starts_on}..{po.ends_on}\t{po.total} {po.currency}\t"
            f"{len(po.lines)} lines"
        )


@purchase_orders.command("show")
@click.argument("order")
@with_appcontext
def purchase_orders_show(order: str) -> None:
    """An order (its id or PO number), its approvals and its lines matched."""
    session = db_session()
    try:
        if order.upper().startswith("PO-"):
            from sqlalchemy import select

            from portal.procurement.models import PurchaseOrder

            found = session.scalar(
                select(PurchaseOrder.id).where(PurchaseOrder.number == order.upper())
            )
            if found is None:
                raise click.ClickException(f"No purchase order {order}.")
            order = str(found)
        po = service.purchase_order_get(session, _CLI, order)
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"{po.number or f'draft #{po.id}'}  {po.state.value}  {po.vendor.name}")
    click.echo(f"term {po.starts_on}..{po.ends_on}  total {po.total} {po.currency}")
    for approval in po.approvals:
        click.echo(
            f"approved by {approval.user.email} ({approval.role}) "
            f"{approval.approved_at:%Y-%m-%d %H:%M}Z"
        )
    for match in service.match_lines(po):
        line = match.line
        problems = ", ".join(match.problems) or "ok"
        click.echo(
            f"  {line.product.sku}\tseats {line.seats} received {match.received_seats} "
            f"invoiced {match.invoiced_seats}\tamount {line.amount} invoiced "
            f"{match.invoiced_amount}\t{problems}"
        )


@purchase_orders.command("mismatches")
@with_appcontext
def purchase_orders_mismatches() -> None:
    """Order lines whose vendor invoices do not match; exit 1 when there are any."""
    found = service.mismatches(db_session(), _CLI)
    for po, matches in found:
        for match in matches:
            click.echo(f"{po.label}\t{match.line.product.sku}\t{', '.join(match.problems)}")
    if found:
        raise click.ClickException(f"{len(found)} orders have vendor invoices that do not match.")
    click.echo("Every recorded vendor invoice matches its order.")
