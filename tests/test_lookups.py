"""Filter boxes find an organisation by slug or name (portal.web.lookups)."""

from __future__ import annotations

from portal.db import bind_scope, db
from portal.kernel.scope import Scope
from portal.web.lookups import organisation_named


def test_a_slug_wins_a_name_is_enough_and_two_of_a_name_ask_for_the_slug(app, make_org):
    make_org("north", name="Twin Works")
    make_org("south", name="Twin Works")
    make_org("solo", name="Solo GmbH")
    make_org("acme", name="Zeta")
    make_org("other", name="Acme")  # a name equal to another's slug: the slug wins
    with app.test_request_context():
        bind_scope(db.session, Scope.council())
        assert organisation_named(db.session, " SOUTH ").found.slug == "south"
        assert organisation_named(db.session, "solo gmbh").found.slug == "solo"
        assert organisation_named(db.session, "ACME").found.slug == "acme"
        several = organisation_named(db.session, "twin works")
        assert several.found is None and "give the slug" in several.error
        missing = organisation_named(db.session, "nobody\x00")
        assert (
            missing.found is None
            and missing.text == "nobody"
            and "No organisation" in missing.error
        )
        assert organisation_named(db.session, "  ").error is None
