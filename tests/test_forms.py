"""``portal.forms.committed``: a page's service call either commits or shows its errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask_wtf import FlaskForm
from wtforms import StringField

from portal.db import bind_scope, db
from portal.forms import committed
from portal.kernel.errors import PermissionDenied, ValidationFailed
from portal.kernel.scope import Scope
from portal.tenancy.models import Organisation
from portal.tenancy.services import organisation_create
from tests.conftest import SYSTEM


class NameForm(FlaskForm):
    class Meta:
        csrf = False

    name = StringField("Name")
    tax_rate_percent = StringField("Tax rate")


def _organisations(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Organisation.slug).order_by(Organisation.slug)))


def _create(slug: str) -> None:
    # The page this stands for binds its person's scope; a council admin's is council-wide.
    bind_scope(db.session, Scope.council())
    organisation_create(
        db.session,
        actor=SYSTEM,
        data={
            "slug": slug,
            "name": slug.title(),
            "country": "DE",
            "currency": "EUR",
            "billing_email": f"billing@{slug}.example",
        },
    )


def test_a_block_that_succeeds_is_committed(app):
    with app.test_request_context(method="POST"):
        form = NameForm()
        with committed(form) as saved:
            _create("globex")
        assert saved
        assert form.errors == {}
    assert _organisations(app) == ["globex"]


def test_a_domain_error_rolls_the_block_back_and_shows_its_messages(app):
    with app.test_request_context(method="POST"):
        form = NameForm()
        with committed(form, aliases={"tax_rate_bp": "tax_rate_percent"}) as saved:
            _create("initech")  # written, then undone with the rest of the block
            raise ValidationFailed(
                "Check the form.",
                errors={"name": ["Give a name."], "tax_rate_bp": ["At most 100 %."]},
            )
        assert not saved
        assert form.name.errors == ["Give a name."]
        assert form.tax_rate_percent.errors == ["At most 100 %."]
    assert _organisations(app) == []


def test_an_error_without_fields_is_flashed(app):
    with app.test_request_context(method="POST"):
        form = NameForm()
        with committed(form) as saved:
            raise PermissionDenied("Only council admins do that.")
        assert not saved
        from flask import get_flashed_messages

        assert get_flashed_messages(with_categories=True) == [
            ("error", "Only council admins do that.")
        ]


def test_other_exceptions_pass_through_and_nothing_is_committed(app):
    with app.test_request_context(method="POST"):
        form = NameForm()
        with pytest.raises(RuntimeError), committed(form):
            _create("hooli")
            raise RuntimeError("a bug, not a rule")
        db.session.rollback()  # as Flask's teardown does for a failed request
    assert _organisations(app) == []
