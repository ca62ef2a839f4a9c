""" "Reconcile now" is a job (issue 13): the page and the API record a ``queued`` run and a
worker runs it; the page refreshes until the run ends; a run delivered again after its
worker died starts over, and a run that ended is left as it is."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import council_wide, db
from portal.jobs.models import Job
from portal.kernel.actor import Actor
from portal.provisioning.reconcile import reconcile_run_job
from portal.provisioning.reconcile_models import (
    DriftFinding,
    DriftKind,
    ReconciliationRun,
    RunState,
)
from tests.conftest import post_form
from tests.provisioning import scim_world as world

vendor_server = world.vendor_server
scim_world = world.scim_world

PAGE = f"/council/vendors/{world.VENDOR}/reconciliation"
WORKER = Actor.system("job:provisioning.reconcile_run")


def _work(app, run_id: int) -> None:
    """What a worker does with the run's job (portal.jobs.queue.execute: council-wide)."""
    with app.app_context():
        with council_wide(db.session):
            reconcile_run_job(db.session, actor=WORKER, run_id=run_id)
        db.session.commit()


def test_the_page_queues_the_run_and_shows_it_once_a_worker_ran_it(
    app, signed_in, scim_world, vendor_server
):
    vendor_server.add_user("stranger@vendor.example")
    admin = signed_in("council_admin")
    asked = post_form(admin, PAGE, {})
    assert asked.status_code == 302
    run_id = int(asked.headers["Location"].rsplit("?run=", 1)[1])
    waiting = admin.get(asked.headers["Location"]).get_data(as_text=True)
    assert 'http-equiv="refresh"' in waiting
    assert "this page refreshes until the run is done" in waiting
    with app.app_context():
        run = db.session.get(ReconciliationRun, run_id)
        assert run.state == RunState.QUEUED and run.findings == []
        job = db.session.scalars(sa.select(Job).where(Job.name == "provisioning.reconcile_run"))
        assert [j.arguments for j in job] == [{"run_id": run_id}]
    assert vendor_server.user("stranger@vendor.example")["active"] is True  # nothing read yet

    _work(app, run_id)
    done = admin.get(f"{PAGE}?run={run_id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in done
    assert "Differences: 1." in done and "stranger@vendor.example" in done


def test_a_run_delivered_again_starts_over_and_an_ended_run_is_left(app, scim_world, vendor_server):
    vendor_server.add_user("stranger@vendor.example")
    with app.app_context():
        # The attempt that died: running, with a finding it had stored.
        run = ReconciliationRun(
            vendor_id=scim_world.vendor_id,
            state=RunState.RUNNING,
            fix=False,
            requested_by="someone",
        )
        run.findings = [DriftFinding(kind=DriftKind.MISSING, user_name="ghost@example.com")]
        db.session.add(run)
        db.session.commit()
        run_id = run.id

    _work(app, run_id)
    with app.app_context():
        run = db.session.get(ReconciliationRun, run_id)
        assert run.state == RunState.DONE and run.drift_count == 1
        assert [f.user_name for f in run.findings] == ["stranger@vendor.example"]
        finished = run.finished_at

    vendor_server.add_user("another@vendor.example")
    _work(app, run_id)  # delivered once more after it ended: nothing changes
    with app.app_context():
        run = db.session.get(ReconciliationRun, run_id)
        assert run.finished_at == finished and run.drift_count == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DriftFinding)) == 1


def test_a_run_whose_vendor_lost_its_scim_connection_meanwhile_fails_saying_so(
    app, signed_in, scim_world, vendor_server
):
    from portal.provisioning.models import VendorProvisioning

    admin = signed_in("council_admin")
    asked = post_form(admin, PAGE, {})
    run_id = int(asked.headers["Location"].rsplit("?run=", 1)[1])
    with app.app_context():
        db.session.execute(
            sa.update(VendorProvisioning)
            .where(VendorProvisioning.vendor_id == scim_world.vendor_id)
            .values(scim_base_url=None)
        )
        db.session.commit()
    _work(app, run_id)
    with app.app_context():
        run = db.session.get(ReconciliationRun, run_id)
        assert run.state == RunState.FAILED and run.finished_at is not None
        assert run.error == "The vendor has no SCIM connection any more."
