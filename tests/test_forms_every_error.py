"""``portal.forms.submitted``: every field's error on the first submit, the input kept (issue 14).

A form whose own checks fail still runs its service inside ``committed``: the service's
messages show beside the fields' own, and nothing of the block is kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask_wtf import FlaskForm
from wtforms import DecimalField, StringField
from wtforms.validators import Length, NumberRange, Optional

from portal.db import bind_scope, db
from portal.forms import committed, submitted
from portal.kernel.scope import Scope
from portal.tenancy.models import Organisation
from portal.tenancy.services import organisation_create
from tests.conftest import SYSTEM


class OrgForm(FlaskForm):
    class Meta:
        csrf = False

    slug = StringField("Slug")
    billing_email = StringField("Billing email")
    tax_rate = DecimalField("Tax rate", validators=[Optional(), NumberRange(min=0, max=100)])


def _slugs(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Organisation.slug).order_by(Organisation.slug)))


def _create(form: OrgForm) -> None:
    bind_scope(db.session, Scope.council())
    organisation_create(
        db.session,
        actor=SYSTEM,
        data={
            "slug": form.slug.data,
            "name": "Globex",
            "country": "DE",
            "currency": "EUR",
            "billing_email": form.billing_email.data,
        },
    )


def _post(app, **fields):
    return app.test_request_context(method="POST", data=fields)


def test_a_bad_field_and_the_services_errors_show_together_and_nothing_is_kept(app):
    bad = {"slug": "Not A Slug!", "billing_email": "no-at-sign", "tax_rate": "lots"}
    with _post(app, **bad):
        form = OrgForm()
        assert submitted(form)
        with committed(form) as saved:
            _create(form)
        assert not saved
        assert form.tax_rate.errors  # the form's own check
        assert form.slug.errors and form.billing_email.errors  # the service's, at once
        # the input stays as typed, to be shown again beside its message
        assert form.slug.data == "Not A Slug!" and form.billing_email.data == "no-at-sign"
        assert form.tax_rate.raw_data == ["lots"]
    assert _slugs(app) == []


def test_a_bad_field_alone_keeps_nothing_even_when_the_service_accepts(app):
    with _post(app, slug="globex", billing_email="billing@globex.example", tax_rate="200"):
        form = OrgForm()
        assert submitted(form)
        with committed(form) as saved:
            _create(form)  # the service accepts these values: it must still not be kept
        assert not saved
        assert list(form.errors) == ["tax_rate"]
    assert _slugs(app) == []


def test_a_field_with_its_own_error_does_not_get_the_services_too(app):
    class StrictForm(OrgForm):
        slug = StringField("Slug", validators=[Length(max=3)])

    with _post(app, slug="Bad Slug", billing_email="billing@globex.example"):
        form = StrictForm()
        submitted(form)
        own = list(form.slug.errors)
        with committed(form):
            _create(form)  # the service refuses the slug as well
        assert form.slug.errors == own


def test_a_good_form_is_committed(app):
    with _post(app, slug="globex", billing_email="billing@globex.example", tax_rate="19"):
        form = OrgForm()
        assert submitted(form)
        with committed(form) as saved:
            _create(form)
        assert saved and form.errors == {}
    assert _slugs(app) == ["globex"]


def test_a_stale_csrf_token_is_not_submitted(app):
    class Protected(FlaskForm):
        slug = StringField("Slug")

    with app.test_request_context(method="POST", data={"slug": "x", "csrf_token": "stale"}):
        assert not submitted(Protected())
    with app.test_request_context(method="GET"):
        assert not submitted(Protected())
