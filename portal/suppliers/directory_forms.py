"""Forms of the supplier directory's council controls (issue 15): the status page address and
the compliance documents. The service status and incident forms are the vendor portal's
(:mod:`portal.suppliers.vendor_portal_forms`), shared by both pages.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, DateField, SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, Length, Optional

from portal.kernel.i18n import _l
from portal.suppliers.compliance import KIND_LABELS


class StatusPageForm(FlaskForm):
    """The Statuspage-format site the portal reads the vendor's status from."""

    status_page_url = StringField(
        _l("Status page address"),
        validators=[Optional(), Length(max=500)],
        description=_l(
            "A Statuspage-format site, e.g. https://status.example.com (its summary.json is "
            "read every few minutes). Empty: no reading."
        ),
        render_kw={"inputmode": "url", "autocomplete": "url"},
    )
    submit = SubmitField(_l("Save address"))


class DocumentForm(FlaskForm):
    """Upload a vendor's certificate or agreement as a PDF."""

    kind = SelectField(_l("Kind"))
    title = StringField(
        _l("Title"),
        validators=[InputRequired(), Length(max=200)],
        description=_l("E.g. “ISO/IEC 27001:2022 certificate, Berlin data centre”."),
    )
    issued_on = DateField(_l("Issued on"), validators=[InputRequired()])
    expires_on = DateField(
        _l("Expires on"),
        validators=[Optional()],
        description=_l("Empty: it does not expire (an agreement in force until ended)."),
    )
    required = BooleanField(
        _l("Required: its expiry puts the vendor under review (when the council's setting is on)")
    )
    file = FileField(
        _l("PDF file (at most 10 MB)"),
        validators=[FileRequired(_l("Choose a PDF file."))],
        render_kw={"accept": "application/pdf,.pdf"},
    )
    submit = SubmitField(_l("Upload document"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind.choices = [(kind.value, label) for kind, label in KIND_LABELS.items()]

    def service_data(self) -> dict[str, Any]:
        return {
            "kind": self.kind.data or "",
            "title": self.title.data or "",
            "issued_on": self.issued_on.data,
            "expires_on": self.expires_on.data,
            "required": bool(self.required.data),
        }
