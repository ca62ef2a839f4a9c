"""Reconciliation (issue 17, SPEC 8.4): what a vendor's application holds, compared with the
seats of its products in the portal.

:func:`reconcile_vendor` reads every user the vendor holds over SCIM (a paginated
``ListResponse``) and lists the drift:

* people **active at the vendor without a seat** of its products (``active_without_seat``):
  created by hand there, or whose release never arrived;
* people **with a seat missing at the vendor** (``missing``) or **inactive** there
  (``inactive``): deleted or deactivated there by hand, or whose assignment never arrived.

A vendor's user is the portal's person when its ``externalId`` is their portal user id
(what the SCIM client gives everyone it creates) or its ``userName`` is their email (case
does not matter). Each run and its findings are stored (:mod:`.reconcile_models`).

With ``fix`` (the vendor's ``reconcile_fix`` for the schedule; ``--fix`` on the command
line), drift is set right there and then, over the same SCIM connection: an extra is
deactivated (never deleted: it may be someone the vendor manages itself), a missing
person created, an inactive one activated (and, with group push, put in their products'
groups). A person with a delivery still on its way to the vendor is left to it
(``in_flight``): the outbox keeps order per person, and a fix must not overtake it.

The schedule runs :func:`reconcile_all` daily (job ``provisioning.reconcile``) for every
vendor with SCIM configured; ``portal provisioning reconcile [--vendor SLUG] [--fix]``
runs it by hand. "Reconcile now" on the pages and the API records a ``queued`` run
(:func:`reconcile_request`) that a worker runs (job ``provisioning.reconcile_run``): reading
a vendor of thousands of people takes longer than a request should.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import httpx2
import sqlalchemy as sa
from scim2_client.errors import SCIMClientException
from scim2_models import SCIMException
from scim2_models import User as ScimUser
from sqlalchemy.orm import Session, lazyload

from portal.audit.services import audit_record
from portal.catalogue.models import Product, Vendor
from portal.identity.models import User
from portal.jobs.queue import enqueue, job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, NotFound
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.provisioning.models import Channel, Delivery, DeliveryState, VendorProvisioning
from portal.provisioning.reconcile_models import (
    DriftFinding,
    DriftFix,
    DriftKind,
    ReconciliationRun,
    RunState,
)
from portal.provisioning.scim_client import (
    ConnectionCheck,
    Directory,
    Person,
    outcome_of_error,
    test_connection,
)
from portal.seats.models import SeatAssignment

#: How often the schedule reconciles every vendor with SCIM configured.
RECONCILE_EVERY = dt.timedelta(days=1)
#: Runs kept per vendor (older ones, and their findings, are deleted by the next run).
KEEP_RUNS = 30


@dataclass(frozen=True)
class Seated:
    """A person holding at least one seat of the vendor's products now."""

    person: Person
    products: tuple[Product, ...]


def seated_people(session: Session, *, vendor_id: int) -> dict[int, Seated]:
    """Everyone active in the portal with a seat of one of the vendor's products, by id."""
    rows = session.execute(
        sa.select(User, Product)
        .join(SeatAssignment, SeatAssignment.user_id == User.id)
        .join(Product, Product.id == SeatAssignment.product_id)
        .where(
            Product.vendor_id == vendor_id,
            SeatAssignment.released_at.is_(None),
            User.is_active.is_(True),
        )
        .order_by(User.id, Product.id)
    ).all()
    out: dict[int, Seated] = {}
    for user, product in rows:
        held = out.get(user.id)
        products = (*held.products, product) if held else (product,)
        out[user.id] = Seated(Person.of(user), products)
    return out


def _in_flight(session: Session, *, vendor_id: int) -> set[int]:
    """People with a SCIM delivery to the vendor not yet delivered nor given up."""
    return set(
        session.scalars(
            sa.select(Delivery.user_id)
            .where(
                Delivery.vendor_id == vendor_id,
                Delivery.channel == Channel.SCIM,
                Delivery.state == DeliveryState.PENDING,
                Delivery.user_id.is_not(None),
            )
            .distinct()
        )
    )


def _portal_ids_by_name(session: Session, names: list[str]) -> dict[str, int]:
    """Portal users by lower-cased email, for the vendor's userNames (to name extras)."""
    out: dict[str, int] = {}
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for user_id, address in session.execute(
            sa.select(User.id, sa.func.lower(User.email)).where(
                sa.func.lower(User.email).in_(chunk)
            )
        ):
            out[address] = user_id
    return out


def _external_user_id(record: ScimUser) -> int | None:
    value = record.external_id or ""
    return int(value) if value.isdigit() and len(value) < 19 else None


def compare(
    session: Session, *, held: list[ScimUser], seated: dict[int, Seated]
) -> list[DriftFinding]:
    """The drift between what the vendor holds and who holds a seat (findings unsaved)."""
    by_email = {s.person.email.lower(): user_id for user_id, s in seated.items()}
    matched: dict[int, ScimUser] = {}
    extras: list[ScimUser] = []
    for record in held:
        name = (record.user_name or "").lower()
        external = _external_user_id(record)
        user_id = external if external in seated else by_email.get(name)
        if user_id is None:
            if record.active is not False:
                extras.append(record)
            continue
        # Two records for one person: the active one counts; the other is an extra.
        previous = matched.get(user_id)
        if previous is None or (previous.active is False and record.active is not False):
            if previous is not None and previous.active is not False:
                extras.append(previous)
            matched[user_id] = record
        elif record.active is not False:
            extras.append(record)

    findings: list[DriftFinding] = []
    names = [(r.user_name or "").lower() for r in extras]
    known = _portal_ids_by_name(session, [n for n in names if n])
    for record in extras:
        name = record.user_name or ""
        findings.append(
            DriftFinding(
                kind=DriftKind.EXTRA,
                user_id=_existing_user_id(session, record) or known.get(name.lower()),
                user_name=name[:254],
                vendor_resource_id=record.id,
            )
        )
    for user_id, seat in sorted(seated.items()):
        held_record = matched.get(user_id)
        if held_record is None:
            kind = DriftKind.MISSING
        elif held_record.active is False:
            kind = DriftKind.INACTIVE
        else:
            continue
        findings.append(
            DriftFinding(
                kind=kind,
                user_id=user_id,
                user_name=seat.person.email[:254],
                vendor_resource_id=held_record.id if held_record is not None else None,
            )
        )
    return findings


def _existing_user_id(session: Session, record: ScimUser) -> int | None:
    external = _external_user_id(record)
    if external is None:
        return None
    return session.scalar(sa.select(User.id).where(User.id == external))


def _fix(
    directory: Directory,
    finding: DriftFinding,
    *,
    seated: dict[int, Seated],
    group_push: bool,
) -> None:
    """Set one finding right at the vendor; the finding says how it went."""
    try:
        if finding.kind == DriftKind.EXTRA:
            assert finding.vendor_resource_id is not None
            directory.retire_id(finding.vendor_resource_id, delete=False)
            finding.fix = DriftFix.DEACTIVATED
            return
        assert finding.user_id is not None
        seat = seated[finding.user_id]
        record = directory.provision(seat.person)
        if group_push and record.id:
            for product in seat.products:
                directory.join(product, record.id)
        finding.fix = DriftFix.CREATED if finding.kind == DriftKind.MISSING else DriftFix.ACTIVATED
        finding.vendor_resource_id = record.id
    except (SCIMClientException, SCIMException, httpx2.HTTPError) as error:
        outcome = outcome_of_error(error, directory.exchanges)
        finding.fix = DriftFix.FAILED
        finding.fix_error = (outcome.error or str(error))[:500]


def _settings(session: Session, vendor: Vendor) -> VendorProvisioning:
    settings = session.scalar(
        sa.select(VendorProvisioning).where(VendorProvisioning.vendor_id == vendor.id)
    )
    if settings is None or not settings.scim_configured:
        raise InvalidState(
            _l("This vendor has no SCIM connection to reconcile."), code="scim_not_configured"
        )
    return settings


def _forget_old_runs(session: Session, vendor_id: int) -> None:
    keep = (
        sa.select(ReconciliationRun.id)
        .where(ReconciliationRun.vendor_id == vendor_id)
        .order_by(ReconciliationRun.id.desc())
        .limit(KEEP_RUNS)
        .scalar_subquery()
    )
    old = list(
        session.scalars(
            sa.select(ReconciliationRun.id).where(
                ReconciliationRun.vendor_id == vendor_id, ReconciliationRun.id.not_in(keep)
            )
        )
    )
    if old:
        session.execute(sa.delete(DriftFinding).where(DriftFinding.run_id.in_(old)))
        session.execute(sa.delete(ReconciliationRun).where(ReconciliationRun.id.in_(old)))


def _new_run(
    session: Session, *, actor: Actor, vendor: Vendor, fix: bool | None, state: RunState
) -> tuple[ReconciliationRun, VendorProvisioning]:
    """A run of ``vendor`` asked for by ``actor`` (who may), with the vendor's settings;
    ``fix`` None: as the vendor's ``reconcile_fix`` says."""
    policy.require(actor, Action.PROVISIONING_RECONCILE, vendor_id=vendor.id)
    settings = _settings(session, vendor)
    run = ReconciliationRun(
        vendor_id=vendor.id,
        state=state,
        fix=settings.reconcile_fix if fix is None else fix,
        started_at=now_utc(),
        requested_by=actor.label[:254],
    )
    session.add(run)
    return run, settings


def reconcile_vendor(
    session: Session,
    *,
    actor: Actor,
    vendor: Vendor,
    fix: bool | None = None,
    directory: Directory | None = None,
) -> ReconciliationRun:
    """Compare ``vendor``'s users with the seats of its products now; store (and, with
    ``fix``, set right) the drift. ``fix`` None: as the vendor's ``reconcile_fix`` says.

    A vendor that cannot be read gives a ``failed`` run with the reason (not an error):
    the schedule goes on with the next vendor, and the page shows why.
    """
    run, settings = _new_run(session, actor=actor, vendor=vendor, fix=fix, state=RunState.RUNNING)
    return _reconcile_into(
        session, actor=actor, vendor=vendor, settings=settings, run=run, directory=directory
    )


def reconcile_request(
    session: Session, *, actor: Actor, vendor: Vendor, fix: bool | None = None
) -> ReconciliationRun:
    """Record a reconciliation of ``vendor`` (``queued``) for a worker to run once this
    transaction commits (the pages' "reconcile now" and the API); the run to poll."""
    run, _ = _new_run(session, actor=actor, vendor=vendor, fix=fix, state=RunState.QUEUED)
    session.flush()
    enqueue(session, "provisioning.reconcile_run", {"run_id": run.id}, actor=actor)
    return run


def _run_gave_up(session: Session, *, error: str, run_id: int) -> None:
    """The run's job gave up (its last attempt failed): the run says so, and why."""
    run = session.get(ReconciliationRun, run_id)
    if run is not None and run.state in (RunState.QUEUED, RunState.RUNNING):
        run.state = RunState.FAILED
        run.error = f"The run stopped: {error}"[:500]
        run.finished_at = now_utc()


@job("provisioning.reconcile_run", max_attempts=2, backoff=(60,), on_give_up=_run_gave_up)
def reconcile_run_job(session: Session, *, actor: Actor, run_id: int) -> None:
    """The job behind "reconcile now": runs the queued run ``run_id``.

    Delivered again after its worker was killed, it reads the vendor again from the start
    (the findings of the attempt that died are dropped; its fixes were made at the vendor
    and are found in place). A run that already ended is left as it is.
    """
    policy.require(actor, Action.JOB_RUN)
    run = session.scalar(
        sa.select(ReconciliationRun)
        .where(ReconciliationRun.id == run_id)
        .options(lazyload(ReconciliationRun.vendor))  # the run's row alone is locked
        .with_for_update()
    )
    if run is None or run.state in (RunState.DONE, RunState.FAILED):
        session.rollback()
        return
    vendor = run.vendor
    run.findings.clear()
    run.state = RunState.RUNNING
    run.started_at = now_utc()
    try:
        settings = _settings(session, vendor)
    except InvalidState:  # the SCIM connection was removed since the run was asked for
        run.state = RunState.FAILED
        run.error = "The vendor has no SCIM connection any more."
        run.finished_at = now_utc()
        return
    session.commit()  # the page shows it running while the vendor is read
    _reconcile_into(session, actor=actor, vendor=vendor, settings=settings, run=run)


def _reconcile_into(
    session: Session,
    *,
    actor: Actor,
    vendor: Vendor,
    settings: VendorProvisioning,
    run: ReconciliationRun,
    directory: Directory | None = None,
) -> ReconciliationRun:
    """Read the vendor, compare, fix as ``run.fix`` says; the outcome written into ``run``."""
    seated = seated_people(session, vendor_id=vendor.id)
    run.seated_people = len(seated)
    own = directory is None
    directory = directory or Directory.for_settings(settings)
    try:
        try:
            held = list(directory.users())
        except (SCIMClientException, SCIMException, httpx2.HTTPError) as error:
            outcome = outcome_of_error(error, directory.exchanges)
            run.state = RunState.FAILED
            run.error = (outcome.error or str(error))[:500]
        else:
            run.vendor_users = len(held)
            findings = compare(session, held=held, seated=seated)
            if run.fix:
                busy = _in_flight(session, vendor_id=vendor.id)
                for finding in findings:
                    if finding.user_id is not None and finding.user_id in busy:
                        finding.fix = DriftFix.IN_FLIGHT
                    else:
                        _fix(directory, finding, seated=seated, group_push=settings.group_push)
            run.findings = findings
            run.drift_count = len(findings)
            run.fixed_count = sum(
                1
                for f in findings
                if f.fix in (DriftFix.DEACTIVATED, DriftFix.CREATED, DriftFix.ACTIVATED)
            )
            run.state = RunState.DONE
    finally:
        if own:
            directory.close()
    run.finished_at = now_utc()
    session.flush()
    _forget_old_runs(session, vendor.id)
    audit_record(
        session,
        actor=actor,
        action="provisioning.reconcile",
        target_type="vendor",
        target_id=vendor.id,
        target_label=vendor.slug,
        after={
            "run": run.id,
            "state": str(run.state),
            "fix": run.fix,
            "requested_by": run.requested_by,
            "vendor_users": run.vendor_users,
            "seated_people": run.seated_people,
            "drift": run.drift_count,
            "fixed": run.fixed_count,
        },
    )
    return run


def reconcile_all(session: Session, *, actor: Actor) -> list[ReconciliationRun]:
    """Reconcile every vendor with SCIM configured, each as its setting says."""
    policy.require(actor, Action.PROVISIONING_RECONCILE)  # every vendor's: council-wide
    vendors = session.scalars(
        sa.select(Vendor)
        .join(VendorProvisioning, VendorProvisioning.vendor_id == Vendor.id)
        .where(
            VendorProvisioning.scim_base_url.is_not(None),
            VendorProvisioning.scim_token_sealed.is_not(None),
        )
        .order_by(Vendor.slug)
    ).all()
    return [reconcile_vendor(session, actor=actor, vendor=vendor) for vendor in vendors]


@job("provisioning.reconcile", max_attempts=2, backoff=(1800,), every=RECONCILE_EVERY)
def reconcile_job(session: Session, *, actor: Actor) -> None:
    """Daily: reconcile every vendor with SCIM configured (fixing where it says so)."""
    policy.require(actor, Action.JOB_RUN)
    reconcile_all(session, actor=actor)


# ------------------------------------------------------------------ reads


def runs_of(
    session: Session, *, actor: Actor, vendor: Vendor, limit: int = 20
) -> list[ReconciliationRun]:
    """A vendor's latest reconciliation runs, newest first (council, or that vendor)."""
    policy.require(actor, Action.PROVISIONING_READ, vendor_id=vendor.id)
    return list(
        session.scalars(
            sa.select(ReconciliationRun)
            .where(ReconciliationRun.vendor_id == vendor.id)
            .order_by(ReconciliationRun.id.desc())
            .limit(limit)
        )
    )


def findings_of(session: Session, *, actor: Actor, run: ReconciliationRun) -> list[DriftFinding]:
    """A run's findings, in the order they were found."""
    policy.require(actor, Action.PROVISIONING_READ, vendor_id=run.vendor_id)
    return list(
        session.scalars(
            sa.select(DriftFinding).where(DriftFinding.run_id == run.id).order_by(DriftFinding.id)
        )
    )


def latest_runs(session: Session, *, actor: Actor) -> list[tuple[Vendor, ReconciliationRun | None]]:
    """Every vendor with SCIM configured and its latest run (the council's overview)."""
    policy.require(actor, Action.PROVISIONING_READ)
    latest = (
        sa.select(ReconciliationRun.vendor_id, sa.func.max(ReconciliationRun.id).label("run_id"))
        .group_by(ReconciliationRun.vendor_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(Vendor, ReconciliationRun)
        .join(VendorProvisioning, VendorProvisioning.vendor_id == Vendor.id)
        .outerjoin(latest, latest.c.vendor_id == Vendor.id)
        .outerjoin(ReconciliationRun, ReconciliationRun.id == latest.c.run_id)
        .where(
            VendorProvisioning.scim_base_url.is_not(None),
            VendorProvisioning.scim_token_sealed.is_not(None),
        )
        .order_by(Vendor.name)
    ).all()
    return [(vendor, run) for vendor, run in rows]


def run_of(session: Session, *, actor: Actor, vendor: Vendor, run_id: int) -> ReconciliationRun:
    """One of ``vendor``'s runs (another vendor's run id is not found)."""
    policy.require(actor, Action.PROVISIONING_READ, vendor_id=vendor.id)
    run = session.scalar(
        sa.select(ReconciliationRun).where(
            ReconciliationRun.id == run_id, ReconciliationRun.vendor_id == vendor.id
        )
    )
    if run is None:
        raise NotFound(_l("No such reconciliation run."))
    return run


def scim_settings_of(
    session: Session, *, actor: Actor, vendor: Vendor
) -> VendorProvisioning | None:
    """The vendor's provisioning settings, if any (for the page's summary)."""
    policy.require(actor, Action.PROVISIONING_READ, vendor_id=vendor.id)
    return session.scalar(
        sa.select(VendorProvisioning).where(VendorProvisioning.vendor_id == vendor.id)
    )


def connection_check(session: Session, *, actor: Actor, vendor: Vendor) -> ConnectionCheck:
    """Test the vendor's SCIM connection: read its ``ServiceProviderConfig`` and one user."""
    policy.require(actor, Action.PROVISIONING_CONFIGURE, vendor_id=vendor.id)
    return test_connection(_settings(session, vendor))
