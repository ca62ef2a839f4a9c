"""The reconciliation page's forms (issue 17) and the words for its states and findings."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SubmitField

from portal.kernel.i18n import _l


class ReconcileForm(FlaskForm):
    """Reconcile now; ``fix``: set the drift right at the vendor too."""

    fix = BooleanField(_l("Also fix the drift at the vendor"))
    submit = SubmitField(_l("Reconcile now"))


class ConnectionTestForm(FlaskForm):
    """Test the SCIM connection (reads the vendor's ServiceProviderConfig)."""

    submit = SubmitField(_l("Test the SCIM connection"))


RUN_STATE_LABELS = {
    "queued": _l("queued"),
    "running": _l("running"),
    "done": _l("done"),
    "failed": _l("failed"),
}

DRIFT_KIND_LABELS = {
    "active_without_seat": _l("Active at the vendor without a seat"),
    "missing": _l("Has a seat, missing at the vendor"),
    "inactive": _l("Has a seat, inactive at the vendor"),
}

DRIFT_FIX_LABELS = {
    "deactivated": _l("deactivated"),
    "created": _l("created"),
    "activated": _l("activated"),
    "in_flight": _l("left to the delivery on its way"),
    "failed": _l("fix failed"),
}
