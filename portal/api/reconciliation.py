"""Reconciliation of a vendor's SCIM users with the seats (issue 17, SPEC 8.4), and the SCIM
connection test.

* ``GET /vendors/{slug}/provisioning/reconciliations``: the latest runs, newest first, each
  with its findings;
* ``POST /vendors/{slug}/provisioning/reconciliations`` ``{"fix": bool}``: reconcile now
  (201, the run ``queued``, with ``Location``: a worker runs it, job
  ``provisioning.reconcile_run``; a vendor that cannot be read gives a run ``failed``);
* ``GET /vendors/{slug}/provisioning/reconciliations/{id}``: one run (poll it until ``done``
  or ``failed``);
* ``POST /vendors/{slug}/provisioning/scim-test``: read the vendor's
  ``ServiceProviderConfig`` and one user with the stored token.

A council token, or a vendor token of THAT vendor (another vendor's: 404).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from portal.api.auth import COUNCIL, VENDOR, current_actor
from portal.api.framework import reply, route
from portal.api.provisioning import tag
from portal.api.schemas import MAX_ID, ApiModel, SlugPath
from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel import policy
from portal.kernel.policy import Action
from portal.provisioning import reconcile
from portal.provisioning.reconcile_models import ReconciliationRun


class ReconcileIn(ApiModel):
    """Reconcile now."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"fix": False}})
    fix: StrictBool = Field(
        description="Also set the drift right at the vendor (false: only list it)"
    )


class FindingOut(BaseModel):
    kind: Literal["active_without_seat", "missing", "inactive"] = Field(
        description="Active at the vendor without a seat; or with a seat, missing or inactive there"
    )
    person: str = Field(description="The userName at the vendor, or the person's email")
    vendor_resource_id: str | None = Field(description="The vendor's id of the record")
    fix: Literal["deactivated", "created", "activated", "in_flight", "failed"] | None = Field(
        description="What was done (`in_flight`: left to a delivery on its way)"
    )
    fix_error: str | None


class RunOut(BaseModel):
    id: int
    state: Literal["queued", "running", "done", "failed"]
    fix: bool
    started_at: dt.datetime
    finished_at: dt.datetime | None
    requested_by: str
    vendor_users: int = Field(description="Users the vendor holds")
    seated_people: int = Field(description="People with a seat of the vendor's products")
    drift: int
    fixed: int
    error: str | None = Field(description="Why the vendor's users could not be read")
    findings: list[FindingOut]

    @classmethod
    def of(cls, run: ReconciliationRun) -> RunOut:
        return cls(
            id=run.id,
            state=run.state.value,
            fix=run.fix,
            started_at=run.started_at,
            finished_at=run.finished_at,
            requested_by=run.requested_by,
            vendor_users=run.vendor_users,
            seated_people=run.seated_people,
            drift=run.drift_count,
            fixed=run.fixed_count,
            error=run.error,
            findings=[
                FindingOut(
                    kind=f.kind.value,
                    person=f.user_name,
                    vendor_resource_id=f.vendor_resource_id,
                    fix=f.fix.value if f.fix else None,
                    fix_error=f.fix_error,
                )
                for f in run.findings
            ],
        )


class RunPath(SlugPath):
    id: int = Field(ge=1, le=MAX_ID, description="The run's id")


class RunList(BaseModel):
    data: list[RunOut]


class ConnectionOut(BaseModel):
    ok: bool
    status: int | None = Field(description="The HTTP status of the last answer, if one came")
    error: str | None
    patch: bool = Field(description="The vendor supports PATCH")
    filter: bool = Field(description="The vendor supports filters")
    bulk: bool = Field(description="The vendor supports bulk operations")


def _vendor(slug: str, action: Action) -> Vendor:
    vendor = vendor_by_slug(db_session(), slug)
    policy.require(current_actor(), action, vendor_id=vendor.id)
    return vendor


@route(
    "get",
    "/vendors/<slug>/provisioning/reconciliations",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.PROVISIONING_READ,
    responses={200: RunList},
    errors=[404],
)
def reconciliations_list(path: SlugPath) -> Response:
    """The vendor's latest reconciliation runs (up to 20), newest first, with findings."""
    vendor = _vendor(path.slug, Action.PROVISIONING_READ)
    runs = reconcile.runs_of(db_session(), actor=current_actor(), vendor=vendor)
    return reply(RunList(data=[RunOut.of(run) for run in runs]))


@route(
    "post",
    "/vendors/<slug>/provisioning/reconciliations",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.PROVISIONING_RECONCILE,
    responses={201: RunOut},
    errors=[404, 409],
)
def reconciliation_create(path: SlugPath, body: ReconcileIn) -> Response:
    """Compare the vendor's SCIM users with the seats of its products: the run is recorded
    `queued` and a worker runs it (poll the run at `Location` until `done` or `failed`).

    Lists people active at the vendor without a seat, and people with a seat missing or
    inactive there; with `fix`, deactivates the former and creates or activates the
    latter (a person with a delivery on its way is left to it). 409 `scim_not_configured`
    for a vendor without a SCIM connection.
    """
    vendor = _vendor(path.slug, Action.PROVISIONING_RECONCILE)
    run = reconcile.reconcile_request(
        db_session(), actor=current_actor(), vendor=vendor, fix=body.fix
    )
    response = reply(RunOut.of(run), status=201)
    response.headers["Location"] = (
        f"/api/v1/vendors/{vendor.slug}/provisioning/reconciliations/{run.id}"
    )
    return response


@route(
    "get",
    "/vendors/<slug>/provisioning/reconciliations/<int:id>",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.PROVISIONING_READ,
    responses={200: RunOut},
    errors=[404],
)
def reconciliation_get(path: RunPath) -> Response:
    """One reconciliation run of the vendor, with its findings (poll it until `done` or
    `failed`)."""
    vendor = _vendor(path.slug, Action.PROVISIONING_READ)
    run = reconcile.run_of(db_session(), actor=current_actor(), vendor=vendor, run_id=path.id)
    return reply(RunOut.of(run))


@route(
    "post",
    "/vendors/<slug>/provisioning/scim-test",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.PROVISIONING_CONFIGURE,
    responses={200: ConnectionOut},
    errors=[404, 409],
)
def scim_test(path: SlugPath) -> Response:
    """Test the SCIM connection: read the vendor's `ServiceProviderConfig` and one user
    with the stored token (`ok` false with the status or error otherwise)."""
    vendor = _vendor(path.slug, Action.PROVISIONING_CONFIGURE)
    check = reconcile.connection_check(db_session(), actor=current_actor(), vendor=vendor)
    return reply(
        ConnectionOut(
            ok=check.ok,
            status=check.status,
            error=check.error,
            patch=check.patch,
            filter=check.filter,
            bulk=check.bulk,
        )
    )
