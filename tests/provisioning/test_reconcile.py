"""Reconciliation (issue 17): drift made by hand at a real SCIM 2.0 server is found, stored,
and set right with ``--fix`` (or by the daily job where the vendor's setting says so)."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.kernel.actor import Actor
from tests.conftest import SYSTEM
from tests.provisioning import scim_world as world
from tests.support import deliver_job

vendor_server = world.vendor_server
scim_world = world.scim_world

PEOPLE = ("ada@scim-buyer.example", "bo@scim-buyer.example", "cy@scim-buyer.example")


def _seated(app, setup, server) -> dict[str, str]:
    """Three people with seats, delivered: the vendor holds them, active; their vendor ids."""
    with app.app_context():
        for email in PEOPLE:
            world.member(app, setup, email)
            world.assign(setup, email)
        assert {r.state for r in world.deliveries()} == {"delivered"}
    return {email: server.user(email)["id"] for email in PEOPLE}


def _drift_by_hand(server, ids: dict[str, str]) -> None:
    """The vendor's staff: someone added, someone deleted, someone deactivated."""
    server.add_user("stranger@vendor.example")
    server.add_user("left-long-ago@vendor.example", active=False)  # not drift
    server.delete_user(ids["ada@scim-buyer.example"])
    with server.http() as http:
        answer = http.patch(
            f"/Users/{ids['bo@scim-buyer.example']}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
        )
        assert answer.status_code in (200, 204), answer.text


def _vendor(setup):
    from portal.catalogue.models import Vendor

    return db.session.get(Vendor, setup.vendor_id)


def _findings(run) -> set[tuple[str, str, str | None]]:
    return {(f.kind.value, f.user_name, f.fix.value if f.fix else None) for f in run.findings}


def test_drift_made_by_hand_is_found_and_nothing_changes_without_fix(
    app, scim_world, vendor_server, jobs_inline
):
    from portal.provisioning.reconcile import reconcile_vendor
    from portal.provisioning.reconcile_models import ReconciliationRun, RunState

    ids = _seated(app, scim_world, vendor_server)
    _drift_by_hand(vendor_server, ids)
    before = vendor_server.users()
    with app.app_context():
        run = reconcile_vendor(db.session, actor=SYSTEM, vendor=_vendor(scim_world), fix=False)
        db.session.commit()
        assert run.state == RunState.DONE and run.fix is False
        assert (run.vendor_users, run.seated_people, run.drift_count) == (4, 3, 3)
        assert _findings(run) == {
            ("active_without_seat", "stranger@vendor.example", None),
            ("missing", "ada@scim-buyer.example", None),
            ("inactive", "bo@scim-buyer.example", None),
        }
        stored = db.session.scalars(sa.select(ReconciliationRun)).one()
        assert stored.finished_at is not None and len(stored.findings) == 3
    assert vendor_server.users() == before


def test_fix_sets_the_drift_right_from_the_command_line(
    app, runner, scim_world, vendor_server, jobs_inline
):
    ids = _seated(app, scim_world, vendor_server)
    _drift_by_hand(vendor_server, ids)

    result = runner.invoke(args=["provisioning", "reconcile", "--vendor", "scim-e2e", "--fix"])
    assert result.exit_code == 0, result.output
    assert "4 at the vendor, 3 with a seat, 3 drift, 3 fixed" in result.output
    assert "active_without_seat\tstranger@vendor.example\tdeactivated" in result.output
    assert "missing\tada@scim-buyer.example\tcreated" in result.output
    assert "inactive\tbo@scim-buyer.example\tactivated" in result.output

    assert vendor_server.user("stranger@vendor.example")["active"] is False
    ada = vendor_server.user("ada@scim-buyer.example")
    assert ada["active"] is True and ada["id"] != ids["ada@scim-buyer.example"]
    assert vendor_server.user("bo@scim-buyer.example")["active"] is True

    again = runner.invoke(args=["provisioning", "reconcile"])
    assert again.exit_code == 0, again.output
    assert "scim-e2e\t5 at the vendor, 3 with a seat, 0 drift" in again.output


def test_the_daily_job_fixes_where_the_vendor_asks_for_it(
    app, scim_world, vendor_server, jobs_inline
):
    from portal.jobs.queue import enqueue
    from portal.provisioning import services
    from portal.provisioning.reconcile_models import ReconciliationRun

    ids = _seated(app, scim_world, vendor_server)
    _drift_by_hand(vendor_server, ids)
    with app.app_context():
        services.settings_update(
            db.session, actor=SYSTEM, vendor=_vendor(scim_world), data={"reconcile_fix": True}
        )
        row = enqueue(db.session, "provisioning.reconcile", actor=SYSTEM)
        db.session.commit()  # runs inline (jobs_inline)
        job_id = row.id
    with app.app_context():
        run = db.session.scalars(sa.select(ReconciliationRun)).one()
        assert run.fix is True and run.fixed_count == 3
        assert run.requested_by == "job:provisioning.reconcile"
    assert vendor_server.user("stranger@vendor.example")["active"] is False
    assert vendor_server.user("ada@scim-buyer.example")["active"] is True
    assert deliver_job(app, job_id) == "skipped"  # ran once; a second message does nothing


def test_a_person_with_a_delivery_on_its_way_is_left_to_it(
    app, scim_world, vendor_server, jobs_inline, clock
):
    from portal.provisioning.reconcile import reconcile_vendor

    clock.freeze(clock.now)
    vendor_server.down()
    with app.app_context():
        world.member(app, scim_world, "dee@scim-buyer.example")
        world.assign(scim_world, "dee@scim-buyer.example")  # the vendor is away: pending
    vendor_server.up()
    with app.app_context():
        run = reconcile_vendor(db.session, actor=SYSTEM, vendor=_vendor(scim_world), fix=True)
        db.session.commit()
        assert _findings(run) == {("missing", "dee@scim-buyer.example", "in_flight")}
        assert run.fixed_count == 0
    assert vendor_server.users() == []


def test_a_vendor_that_cannot_be_read_gives_a_failed_run(
    app, runner, scim_world, vendor_server, jobs_inline
):
    from portal.provisioning.reconcile_models import ReconciliationRun, RunState

    vendor_server.down()
    result = runner.invoke(args=["provisioning", "reconcile", "--vendor", "scim-e2e"])
    assert result.exit_code == 1
    assert result.output.startswith("scim-e2e\tfailed\t")
    with app.app_context():
        run = db.session.scalars(sa.select(ReconciliationRun)).one()
        assert run.state == RunState.FAILED and run.error and not run.findings


def test_bad_input_on_the_command_line_is_one_line(app, runner, make_product):
    make_product(sku="plain-app", vendor="plain")
    unknown = runner.invoke(args=["provisioning", "reconcile", "--vendor", "nobody"])
    assert unknown.exit_code == 1 and "No vendor" in unknown.output
    assert len(unknown.output.strip().splitlines()) == 1
    plain = runner.invoke(args=["provisioning", "reconcile", "--vendor", "plain"])
    assert plain.exit_code == 1 and "no SCIM connection" in plain.output
    nothing = runner.invoke(args=["provisioning", "reconcile"])
    assert nothing.exit_code == 0 and "nothing to reconcile" in nothing.output


def test_only_the_council_and_that_vendor_may_reconcile_or_read_runs(
    app, scim_world, vendor_server, make_product, jobs_inline
):
    import pytest

    from portal.catalogue.models import Vendor
    from portal.kernel.actor import Role
    from portal.kernel.errors import NotFound, PermissionDenied
    from portal.provisioning.reconcile import reconcile_vendor, runs_of

    make_product(sku="other-app", vendor="other")
    with app.app_context():
        other = db.session.scalars(sa.select(Vendor).where(Vendor.slug == "other")).one()
        vendor = _vendor(scim_world)
        own = _vendor_admin(vendor.id)
        stranger = _vendor_admin(other.id)
        run = reconcile_vendor(db.session, actor=own, vendor=vendor)
        assert runs_of(db.session, actor=own, vendor=vendor) == [run]
        with pytest.raises(NotFound):
            runs_of(db.session, actor=stranger, vendor=vendor)
        with pytest.raises(NotFound):
            reconcile_vendor(db.session, actor=stranger, vendor=vendor)
        member = _person_actor(Role.MEMBER, scim_world.org.id)
        with pytest.raises(PermissionDenied):
            reconcile_vendor(db.session, actor=member, vendor=vendor)
        db.session.rollback()


def _vendor_admin(vendor_id: int) -> Actor:
    """A vendor's API token (the vendor-admin role, that vendor's objects only)."""
    from portal.kernel.actor import Role

    return Actor.api_token(f"vendor token {vendor_id}", role=Role.VENDOR_ADMIN, vendor_id=vendor_id)


def _person_actor(role, organisation_id: int) -> Actor:
    return Actor.api_token("org token", role=role, organisation_id=organisation_id)
