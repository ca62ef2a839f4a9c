"""The ``portal`` command line (``flask --app portal`` gives the same commands).

Every command runs in one database transaction that commits at the end, and
exits non-zero with a one-line reason when its input is bad.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import sys
from typing import Any

import click
from flask import Flask, has_app_context
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext

from portal import create_app
from portal.api import services as api_services
from portal.audit.services import audit_chain_check
from portal.billing.exports import export_rows, write_csv, write_json
from portal.billing.jobs import invoice_run as run_invoices
from portal.catalogue.selectors import vendor_by_slug
from portal.db import bind_scope, db_session
from portal.demo import load_demo
from portal.identity.accounts import user_create
from portal.inputs import guard_commands
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.periods import period_bounds
from portal.kernel.scope import Scope
from portal.metering.partitions import MONTHS_AHEAD, usage_partitions_ensure, usage_partitions_list
from portal.notifications.cli import notifications
from portal.procurement.demand_cli import demand as demand_cli
from portal.procurement.forecast_cli import forecasts
from portal.procurement.purchase_orders_cli import purchase_orders
from portal.provisioning import commands as provisioning_commands  # noqa: F401  (deliver, …)
from portal.provisioning.cli import provisioning
from portal.seats.counts import counts_recount
from portal.suppliers import compliance_cli  # noqa: F401  (documents, compliance-check)
from portal.suppliers.cli import suppliers
from portal.suppliers.vendor_portal_cli import vendor_admin
from portal.tenancy.selectors import organisation_by_slug


def _fail(error: DomainError) -> click.ClickException:
    fields = "; ".join(
        f"{k}: {' '.join(v)}"
        for k, v in (error.errors or {}).items()
        if " ".join(v) != error.detail  # said once is enough
    )
    return click.ClickException(f"{error.detail} {fields}".strip())


@click.command("create-admin")
@click.option("--email", required=True, help="The council admin's email address.")
@click.option("--password", help="The password; asked for when not given.")
@click.option("--name", default="", help="The admin's name.")
@with_appcontext
def create_admin(email: str, password: str | None, name: str) -> None:
    """Create a council admin account."""
    if password is None:
        if not sys.stdin.isatty():
            raise click.ClickException("Give --password, or run in a terminal to be asked for one.")
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            raise click.ClickException("The two passwords differ.")
    try:
        user = user_create(
            db_session(),
            actor=Actor.system("cli"),
            email=email,
            name=name,
            role=Role.COUNCIL_ADMIN,
            password=password,
        )
        db_session().commit()
    except DomainError as error:
        db_session().rollback()
        raise _fail(error) from error
    click.echo(f"Council admin {user.email} created.")


@click.command("demo")
@with_appcontext
def demo() -> None:
    """Load a demo council: organisations, users and (as the portal grows) more."""
    try:
        summary = load_demo(db_session())
        db_session().commit()
    except DomainError as error:
        db_session().rollback()
        raise _fail(error) from error
    for line in summary:
        click.echo(line)


@click.group("token")
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--scope", default="", help="council, organisation or vendor.")
@click.option("--org", "org_slug", help="The organisation (for --scope organisation).")
@click.option("--vendor", "vendor_slug", help="The vendor (for --scope vendor).")
@click.option("--name", default="", help="What the token is for (default: the scope and owner).")
@click.option("--expires-in-days", default="", help="Expire after this many days (default: 90).")
@click.option("--never-expires", is_flag=True, help="Work until revoked (instead of 90 days).")
@with_appcontext
def token_create(
    scope: str,
    org_slug: str | None,
    vendor_slug: str | None,
    name: str,
    expires_in_days: str,
    never_expires: bool,
) -> None:
    """Create an API token; the token alone is printed on the last line."""
    # Bad input is one line on standard error (click's own usage errors take several).
    if scope not in ("council", "organisation", "vendor"):
        raise click.ClickException("Give --scope council, organisation or vendor.")
    if scope == "organisation" and not org_slug:
        raise click.ClickException("--scope organisation needs --org SLUG.")
    if scope == "vendor" and not vendor_slug:
        raise click.ClickException("--scope vendor needs --vendor SLUG.")
    if org_slug and scope != "organisation":
        raise click.ClickException("--org goes only with --scope organisation.")
    if vendor_slug and scope != "vendor":
        raise click.ClickException("--vendor goes only with --scope vendor.")
    if never_expires and expires_in_days:
        raise click.ClickException("Give --expires-in-days or --never-expires, not both.")
    days = None
    if expires_in_days:
        if not expires_in_days.isdigit() or not 1 <= int(expires_in_days) <= 3650:
            raise click.ClickException("--expires-in-days takes a whole number from 1 to 3650.")
        days = int(expires_in_days)
    try:
        organisation = organisation_by_slug(db_session(), org_slug) if org_slug else None
        vendor = vendor_by_slug(db_session(), vendor_slug) if vendor_slug else None
        owner = org_slug or vendor_slug or "council"
        api_token, plaintext = api_services.token_create(
            db_session(),
            actor=Actor.system("cli"),
            scope=scope,
            organisation=organisation,
            vendor=vendor,
            name=name or f"{scope} token for {owner} (command line)",
            # No --expires-in-days: the service's default (90 days), unless --never-expires.
            expires_at=now_utc() + dt.timedelta(days=days) if days else None,
            never_expires=never_expires,
        )
        db_session().commit()
    except DomainError as error:
        db_session().rollback()
        raise _fail(error) from error
    expiry = (
        f"expires {api_token.expires_at:%Y-%m-%d %H:%M} UTC"
        if api_token.expires_at
        else "never expires"
    )
    click.echo(
        f"Created {scope} token {api_token.prefix}… for {owner} ({expiry}). "
        "It is shown once, below; store it now."
    )
    click.echo(plaintext)


@click.command("invoice-run")
@click.option("--period", required=True, help="The month to invoice, YYYY-MM.")
@click.option("--finalize", is_flag=True, help="Finalise the drafts: number, PDF, mail.")
@with_appcontext
def invoice_run(period: str, finalize: bool) -> None:
    """Draft (and finalise) every organisation's invoice for a month."""
    try:
        period_bounds(period)
    except DomainError as error:
        raise _fail(error) from error
    actor = Actor.system("cli")
    bar = click.progressbar(length=1, label=f"Invoicing {period}", file=sys.stderr)
    with bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        try:
            run = run_invoices(
                db_session(), actor=actor, period=period, finalize=finalize, on_progress=progress
            )
        except DomainError as error:
            db_session().rollback()
            raise _fail(error) from error
    click.echo(
        f"{run.period}: {run.organisations_done} organisations, {run.invoices_created} drafts "
        f"created, {run.invoices_refreshed} refreshed, {run.invoices_finalised} finalised."
    )
    if run.error:
        raise click.ClickException(run.error.splitlines()[0])


@click.group("export")
def export() -> None:
    """Finance exports."""


@export.command("invoices")
@click.option("--period", required=True, help="The month, YYYY-MM.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file instead of standard output.",
)
@with_appcontext
def export_invoices(period: str, fmt: str, output: str | None) -> None:
    """One row per invoice line of a month's finalised invoices (and credit notes)."""
    try:
        period_bounds(period)  # before anything is written: the rows are read lazily
        rows = export_rows(db_session(), scope=Scope.council(), period=period)
        if output:
            with open(output, "w", newline="", encoding="utf-8") as out:
                count = (write_csv if fmt == "csv" else write_json)(rows, out)
            click.echo(f"{count} rows written to {output}.", err=True)
        else:
            (write_csv if fmt == "csv" else write_json)(rows, sys.stdout)
    except DomainError as error:
        raise _fail(error) from error


@click.group("audit")
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Check the audit log's hash chain; exit 1 naming the first broken link."""
    report = audit_chain_check(db_session(), actor=Actor.system("cli"))
    db_session().commit()  # the check is recorded (the chain page shows the last one)
    if not report.intact:
        raise click.ClickException(report.describe())
    click.echo(report.describe())


@click.group("usage")
def usage() -> None:
    """Usage events."""


@usage.command("partitions")
@click.option(
    "--ahead",
    default=MONTHS_AHEAD,
    type=click.IntRange(0, 24),
    show_default=True,
    help="Months to make ahead of the current one.",
)
@with_appcontext
def usage_partitions(ahead: int) -> None:
    """Make the month partitions of usage_events (PostgreSQL) for this month and the next
    ones, as the daily job does, and list them."""
    session = db_session()
    made = usage_partitions_ensure(session, actor=Actor.system("cli"), now=now_utc(), ahead=ahead)
    partitions = usage_partitions_list(session)
    session.commit()
    if not partitions:
        click.echo("usage_events is not partitioned on this database (SQLite): nothing to do.")
        return
    click.echo(f"Made {len(made)}: {', '.join(m.strftime('%Y-%m') for m in made) or 'none'}.")
    for partition in partitions:
        months = (
            f"{partition.start:%Y-%m}"
            if partition.start is not None
            else "any month without its own partition"
        )
        click.echo(f"{partition.name}\t{months}")


@click.group("seats")
def seats() -> None:
    """Subscriptions and seats."""


@seats.command("recount")
@click.option("--fix", is_flag=True, help="Correct the kept figures to the subscriptions' sums.")
@with_appcontext
def seats_recount(fix: bool) -> None:
    """Compare each product's kept seat figures (reserved, waiting, assigned: what the
    catalogue shows) with its subscriptions' sums; exit 1 listing the differences, or with
    --fix correct them (audited)."""
    session = db_session()
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    differing = counts_recount(session, actor=Actor.system("cli"), fix=fix)
    session.commit()
    if not differing:
        click.echo("OK: every product's seat figures are its subscriptions' sums.")
        return
    for product_id, figures in differing.items():
        described = ", ".join(
            f"{name} {kept} kept, {counted} counted" for name, (kept, counted) in figures.items()
        )
        click.echo(f"product {product_id}: {described}")
    if not fix:
        raise click.ClickException(
            f"{len(differing)} product(s) differ; `portal seats recount --fix` corrects them."
        )
    click.echo(f"Corrected {len(differing)} product(s).")


def register_commands(app: Flask) -> None:
    """Attach the portal's commands to the app's CLI; every one refuses control characters."""
    for command in (
        create_admin,
        demo,
        token,
        invoice_run,
        export,
        audit,
        usage,
        seats,
        suppliers,
        notifications,
        provisioning,
        purchase_orders,
        forecasts,
        demand_cli,
        vendor_admin,
    ):
        app.cli.add_command(command)
    guard_commands(app.cli)
    for name, command in app.cli.commands.items():
        if name != "db":  # migrations run as the tables' owner, on an engine of their own
            council_wide_commands(command)


def council_wide_commands(command: click.Command) -> None:
    """Make ``command`` (and its subcommands) run council-wide: an operator's command line
    works across every organisation, so its session is bound to the council scope
    (row-level security on PostgreSQL, ``portal.db.bind_scope``) before the command runs."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            council_wide_commands(sub)
    callback = command.callback
    if callback is None or getattr(callback, "_portal_council_wide", False):
        return

    @functools.wraps(callback)
    def council_wide(*args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            bind_scope(db_session(), Scope.council())
            return callback(*args, **kwargs)
        app = click.get_current_context().ensure_object(ScriptInfo).load_app()
        with app.app_context():
            bind_scope(db_session(), Scope.council())
            return callback(*args, **kwargs)

    council_wide._portal_council_wide = True  # type: ignore[attr-defined]
    command.callback = council_wide


def _create_app() -> Flask:
    return create_app()


def main() -> None:
    """Entry point of the ``portal`` console script."""
    cli = FlaskGroup(
        create_app=_create_app,
        add_default_commands=True,
        help="The shared-use software licensing portal.",
    )
    cli.main(prog_name="portal")
