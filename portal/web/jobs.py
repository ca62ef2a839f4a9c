"""The council's Jobs page: queued, running, failed (with the error) and retried jobs.

Council admins and finance read it; council admins retry a failed or cancelled
job and cancel a queued or failed one (POST with CSRF, audited as ``job.retry``
and ``job.cancel``).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from portal.db import db_session
from portal.forms import committed
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.jobs import selectors
from portal.jobs.labels import job_label, state_label
from portal.jobs.services import job_cancel, job_retry
from portal.kernel import policy
from portal.kernel.actor import Role
from portal.kernel.i18n import _
from portal.kernel.policy import Action

bp = Blueprint("jobs", __name__)
bp.add_app_template_global(job_label, "job_label")
bp.add_app_template_global(state_label, "job_state")


def _show() -> str | None:
    show = request.args.get("show") or None
    return show if show in selectors.FILTERS else None


@bp.get("/council/jobs")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def jobs_list():
    """Jobs newest first, by state (or those that were retried), paginated."""
    actor = auth.current_actor()
    policy.require(actor, Action.JOB_READ)
    show = _show()
    page = request.args.get("page", 1, type=int) or 1
    return render_template(
        "jobs/jobs.html",
        jobs=selectors.jobs_page(db_session(), show=show, page=page),
        counts=selectors.job_counts(db_session()),
        show=show,
        filters=selectors.FILTERS,
        may_manage=policy.allowed(actor, Action.JOB_MANAGE),
    )


@bp.post("/council/jobs/<int:job_id>/<any(retry, cancel):verb>")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def job_act(job_id: int, verb: str):
    """Retry or cancel one job (council admins; finance is refused)."""
    form = ConfirmForm()
    back = redirect(url_for("jobs.jobs_list", show=_show()))
    if not form.validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
        return back
    actor = auth.current_actor()
    if not policy.allowed(actor, Action.JOB_MANAGE):
        abort(403)
    act = job_retry if verb == "retry" else job_cancel
    with committed(form) as saved:
        row = act(db_session(), actor=actor, job_id=job_id)
    if saved:
        label = job_label(row.name)
        flash(
            _("Job %(id)d (%(job)s) queued again.", id=row.id, job=label)
            if verb == "retry"
            else _("Job %(id)d (%(job)s) cancelled.", id=row.id, job=label),
            "success",
        )
    return back
