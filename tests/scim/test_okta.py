"""SCIM as Okta drives it: the request sequence of Okta's SCIM 2.0 provisioning guide and
its SCIM spec tests (list, filter by userName, create, get, PUT, PATCH active false,
push groups: create, rename, add and remove members by PATCH, delete)."""

from __future__ import annotations

from portal.identity.models import User, UserSession
from tests.conftest import login
from tests.scim.conftest import GROUP_SCHEMA, USER_SCHEMA, assert_scim_error
from tests.support import count, row

OKTA_USER = {
    "schemas": [USER_SCHEMA],
    "userName": "test.user@acme.example",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "test.user@acme.example", "type": "work"}],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}


def test_okta_user_lifecycle(app, scim_org):
    okta = scim_org("acme")
    listed = okta.get("/Users", startIndex=1, count=100)
    assert listed.status_code == 200 and listed.mimetype == "application/scim+json"
    assert listed.get_json()["totalResults"] == 0

    absent = okta.get(
        "/Users", filter='userName eq "test.user@acme.example"', startIndex=1, count=100
    )
    body = absent.get_json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert body["totalResults"] == 0 and body["Resources"] == []

    created = okta.post("/Users", OKTA_USER)
    assert created.status_code == 201, created.get_json()
    user = created.get_json()
    assert user["userName"] == "test.user@acme.example" and user["active"] is True
    assert user["externalId"] == "00ujl29u0le5T6Aj10h7"
    # name.formatted is not kept (nor advertised); displayName is, as sent.
    assert user["name"] == {"givenName": "Test", "familyName": "User"}
    assert user["displayName"] == "Test User"
    assert user["meta"]["resourceType"] == "User"
    assert created.headers["Location"] == user["meta"]["location"]
    uid = user["id"]

    got = okta.get(f"/Users/{uid}").get_json()
    assert got["id"] == uid and got["emails"][0]["value"] == "test.user@acme.example"

    found = okta.get(
        "/Users", filter='userName eq "Test.User@acme.example"', startIndex=1, count=100
    )
    assert found.get_json()["totalResults"] == 1  # userName is case-insensitive
    assert found.get_json()["Resources"][0]["id"] == uid

    again = okta.post("/Users", OKTA_USER)
    assert_scim_error(again, 409, "uniqueness")

    replaced = okta.put(
        f"/Users/{uid}",
        {**OKTA_USER, "id": uid, "name": {"givenName": "Tess", "familyName": "User"}},
    )
    assert replaced.status_code == 200
    assert replaced.get_json()["name"]["givenName"] == "Tess"

    deactivated = okta.patch(f"/Users/{uid}", {"op": "replace", "value": {"active": False}})
    assert deactivated.status_code == 200
    assert deactivated.get_json()["active"] is False
    assert row(app, User, int(uid))["is_active"] is False

    reactivated = okta.patch(f"/Users/{uid}", {"op": "replace", "value": {"active": True}})
    assert reactivated.get_json()["active"] is True

    assert (
        okta.get("/Users", filter='userName eq "random@acme.example"').get_json()["totalResults"]
        == 0
    )
    assert_scim_error(okta.get("/Users/999999"), 404)


def test_okta_deactivation_ends_sessions_and_the_password_sign_in(app, scim_org, make_user):
    okta = scim_org("acme")
    person = make_user("member", okta.org, email="pat@acme.example")
    browser = app.test_client()
    assert login(browser, person).status_code == 302
    found = okta.get("/Users", filter='userName eq "pat@acme.example"').get_json()
    uid = found["Resources"][0]["id"]
    okta.patch(f"/Users/{uid}", {"op": "replace", "value": {"active": False}})
    assert browser.get("/my").status_code == 302
    assert (
        count(app, UserSession, UserSession.user_id == person.id, UserSession.revoked_at.is_(None))
        == 0
    )
    assert login(app.test_client(), person).status_code == 401


def test_okta_push_groups(app, scim_org):
    okta = scim_org("acme")
    ids = [
        okta.post(
            "/Users", {**OKTA_USER, "userName": f"u{i}@acme.example", "emails": []}
        ).get_json()["id"]
        for i in range(2)
    ]
    created = okta.post(
        "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2", "members": []}
    )
    assert created.status_code == 201
    gid = created.get_json()["id"]
    assert okta.get(f"/Groups/{gid}").get_json()["displayName"] == "Test SCIMv2"

    renamed = okta.patch(
        f"/Groups/{gid}", {"op": "replace", "value": {"id": gid, "displayName": "Engineering"}}
    )
    assert renamed.status_code == 204
    added = okta.patch(
        f"/Groups/{gid}",
        {
            "op": "add",
            "path": "members",
            "value": [{"value": ids[0], "display": "u0@acme.example"}, {"value": ids[1]}],
        },
    )
    assert added.status_code == 204
    group = okta.get(f"/Groups/{gid}").get_json()
    assert group["displayName"] == "Engineering"
    assert sorted(m["value"] for m in group["members"]) == sorted(ids)

    removed = okta.patch(
        f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{ids[0]}"]'}
    )
    assert removed.status_code == 204
    assert [m["value"] for m in okta.get(f"/Groups/{gid}").get_json()["members"]] == [ids[1]]
    assert okta.get(f"/Users/{ids[1]}").get_json()["groups"][0]["display"] == "Engineering"

    listed = okta.get("/Groups", filter='displayName eq "Engineering"').get_json()
    assert listed["totalResults"] == 1 and listed["Resources"][0]["id"] == gid
    assert okta.delete(f"/Groups/{gid}").status_code == 204
    assert_scim_error(okta.get(f"/Groups/{gid}"), 404)


def test_pagination_follows_start_index_and_count(app, scim_org):
    okta = scim_org("acme")
    for i in range(5):
        okta.post("/Users", {"schemas": [USER_SCHEMA], "userName": f"p{i}@acme.example"})
    page = okta.get("/Users", startIndex=2, count=2).get_json()
    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["p1@acme.example", "p2@acme.example"]
    assert okta.get("/Users", count=0).get_json()["Resources"] == []
