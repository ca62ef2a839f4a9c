"""The SCIM server checked by scim2-tester (python-scim's conformance checker), over HTTP.

scim2-tester reads ``/ServiceProviderConfig``, ``/ResourceTypes`` and ``/Schemas``,
builds its models from what the server publishes, then for each resource type
creates, reads, lists, searches (``POST /.search``), replaces and deletes
resources, and PATCHes (add, replace, remove) every attribute the schemas mark
writable, checking each value comes back as sent. So a schema advertising an
attribute the server drops fails here.

The portal accepts only addresses on the organisation's verified domains
(``portal.scim.services._check_email_for``); scim2-tester's generator would send
``<uuid>@<uuid>.com``, so the test supplies addresses on ``acme.example`` for
``userName`` (and ``emails.value``, which is read-only and never sent). No check
is excluded.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest
import scim2_tester.filling
from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

import portal.scim.api
from portal.db import db
from portal.identity.models import User
from portal.scim.schema import User as ScimUser

FAILING = {Status.ERROR, Status.CRITICAL}


@pytest.fixture
def on_verified_domain(monkeypatch):
    """scim2-tester's value generator, with email addresses on acme.example."""
    original = scim2_tester.filling.get_random_example_value

    def example(path):
        if str(path).lower().endswith(("username", "emails.value")):
            return f"{uuid.uuid4().hex}@acme.example"
        return original(path)

    monkeypatch.setattr(scim2_tester.filling, "get_random_example_value", example)
    state = random.getstate()
    random.seed(7)  # scim2-tester picks booleans and enum values with `random`
    yield
    random.setstate(state)


def _check(live_server: str, token: str, **options):
    headers = {"Authorization": f"Bearer {token}"}
    with Client(base_url=f"{live_server}/scim/v2", headers=headers, timeout=30) as http:
        return check_server(SyncSCIMClient(http), **options)


def test_scim2_tester_finds_nothing_wrong(
    app, live_server, scim_org, on_verified_domain, monkeypatch
):
    acme = scim_org("acme")
    monkeypatch.setitem(app.config, "PORTAL_BASE_URL", live_server)
    results = _check(live_server, acme.token)

    counts = Counter(r.status.name for r in results)
    print(f"scim2-tester: {len(results)} checks, {dict(counts)}")  # noqa: T201 (shown with -s)
    failures = [
        f"{r.resource_type or ''} {r.title}: {r.reason}" for r in results if r.status in FAILING
    ]
    assert failures == [], "\n".join(failures)
    skipped = [
        f"{r.resource_type or ''} {r.title}: {r.reason}"
        for r in results
        if r.status == Status.SKIPPED
    ]
    assert skipped == [], "\n".join(skipped)

    # The checks that prove round trips ran, for both resource types, attribute by attribute.
    ran = Counter((r.resource_type, r.title) for r in results if r.status == Status.SUCCESS)
    for resource in ("User", "Group"):
        for title in (
            "object_creation",
            "object_replacement",
            "object_deletion",
            "search_with_attributes",
        ):
            assert ran[(resource, title)] >= 1, (resource, title)
    assert ran[("User", "check_add_attribute")] >= 3  # name, displayName, externalId
    assert ran[("User", "check_replace_attribute")] >= 5  # … and userName, active
    assert ran[("User", "check_remove_attribute")] >= 3
    assert ran[("Group", "check_add_attribute")] >= 2  # members, externalId
    assert ran[("Group", "check_remove_attribute")] >= 2

    # Everything it created was deleted again (SCIM delete keeps the account, marked).
    with app.app_context():
        left = db.session.query(User).filter(
            User.organisation_id == acme.org.id, User.scim_deleted_at.is_(None)
        )
        assert left.count() == 0


def test_scim2_tester_catches_an_attribute_advertised_but_not_kept(
    app, live_server, scim_org, on_verified_domain, monkeypatch
):
    """The control: publish ``title`` (as the portal did before) without storing it, and
    the same checks fail on it — so the test above can fail."""

    class Advertised(ScimUser):
        title: str | None = None

    Advertised.__name__ = "User"
    acme = scim_org("acme")
    monkeypatch.setitem(app.config, "PORTAL_BASE_URL", live_server)
    monkeypatch.setattr(portal.scim.api, "User", Advertised)
    results = _check(live_server, acme.token, include_tags={"patch:add"}, resource_types=["User"])
    failed = [r for r in results if r.status in FAILING]
    assert [r.data["urn"] for r in failed] == ["title"], failed
