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


def test_suggestions_are_the_first_names_or_those_containing_the_text(app, make_org):
    from portal.web.lookups import organisation_suggestions

    make_org("bolt-works", name="Bolt Works")
    make_org("acme-gmbh", name="Acme GmbH")
    make_org("nuts-and-bolts", name="Zulu 100%")
    make_org("other", name="Other")
    with app.test_request_context():
        bind_scope(db.session, Scope.council())
        names = [name for name, _ in organisation_suggestions(db.session)]
        assert names == sorted(names) and "Acme GmbH" in names
        assert [n for n, _ in organisation_suggestions(db.session, "first", limit=2)] == []
        # By name or slug, any case, in name order; a % is a character, not a wildcard.
        assert organisation_suggestions(db.session, " BOLT ") == [
            ("Bolt Works", "bolt-works"),
            ("Zulu 100%", "nuts-and-bolts"),
        ]
        assert organisation_suggestions(db.session, "100%") == [("Zulu 100%", "nuts-and-bolts")]
        assert organisation_suggestions(db.session, "0%x") == []
        assert len(organisation_suggestions(db.session, None, limit=2)) == 2


def test_the_suggestions_endpoint_answers_council_staff_only(app, make_org, signed_in):
    acme = make_org("acme-gmbh", name="Acme GmbH")
    make_org("bolt-works", name="Bolt Works")
    for role in ("council_admin", "finance"):
        reply = signed_in(role).get("/council/suggestions/organisations?q=acme")
        assert reply.status_code == 200
        assert reply.get_json() == {"items": [{"name": "Acme GmbH", "slug": "acme-gmbh"}]}
    council = signed_in("council_admin")
    for hostile in ("x" * 5000, "%ff%fe", "'--", "%25"):
        assert council.get(f"/council/suggestions/organisations?q={hostile}").status_code == 200
    # A NUL is refused by every page, this one too (a 4xx, not a 500).
    assert council.get("/council/suggestions/organisations?q=a%00").status_code == 400
    assert signed_in("org_admin", acme).get(
        "/council/suggestions/organisations?q=bolt"
    ).status_code in (403, 404)
    anonymous = app.test_client().get("/council/suggestions/organisations?q=bolt")
    assert anonymous.status_code in (302, 401) and b"bolt-works" not in anonymous.data


def test_a_name_that_names_nothing_lists_the_names_containing_it(app, make_org, signed_in):
    """The page with a partial name: a message, and the list holds the near names (the way
    to find one of 10,000 members without JavaScript)."""
    for n in range(60):
        make_org(f"member-{n:02d}", name=f"Member {n:02d}")
    make_org("zeta-tools", name="Zeta Tools")
    council = signed_in("council_admin")
    plain = council.get("/council/usage").get_data(as_text=True)
    assert plain.count('<option value="Member') == 50 and "Zeta Tools" not in plain
    assert 'data-suggest="/council/suggestions/organisations"' in plain
    near = council.get("/council/usage?organisation=zeta")
    assert near.status_code == 422
    html = near.get_data(as_text=True)
    assert "No organisation is named" in html
    assert '<option value="Zeta Tools">zeta-tools</option>' in html and "Member 00" not in html
    audit = council.get("/audit?organisation=zeta").get_data(as_text=True)
    assert '<option value="Zeta Tools">zeta-tools</option>' in audit
