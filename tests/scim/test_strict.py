"""The SCIM server is as strict as it advertises: discovery lists what is stored, what is
writable round-trips, ``If-Match`` is honoured, ``.search`` works where filters do, and
bad input gets a SCIM error that changes nothing."""

from __future__ import annotations

import threading

from portal.identity.models import User
from portal.scim.models import ScimGroup
from tests.scim.conftest import ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA, assert_scim_error
from tests.support import row

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def _user(client, email: str = "pat@acme.example", **more) -> dict:
    created = client.post("/Users", {"schemas": [USER_SCHEMA], "userName": email, **more})
    assert created.status_code == 201, created.get_json()
    return created.get_json()


def _attributes(schema: dict) -> dict[str, dict]:
    return {a["name"]: a for a in schema["attributes"]}


# ---------------------------------------------------------------- discovery


def test_discovery_advertises_what_is_stored_and_no_more(app, scim_org):
    acme = scim_org("acme")
    users = _attributes(acme.get(f"/Schemas/{USER_SCHEMA}").get_json())
    assert set(users) == {"userName", "name", "displayName", "active", "emails", "groups"}
    assert {s["name"] for s in users["name"]["subAttributes"]} == {"givenName", "familyName"}
    assert users["userName"]["required"] is True and users["userName"]["uniqueness"] == "server"
    assert users["active"]["required"] is True  # the portal always knows it
    assert users["emails"]["mutability"] == "readOnly"  # the portal keeps userName
    assert users["groups"]["mutability"] == "readOnly"
    writable = {n for n, a in users.items() if a["mutability"] == "readWrite"}
    assert writable == {"userName", "name", "displayName", "active"}

    groups = _attributes(acme.get(f"/Schemas/{GROUP_SCHEMA}").get_json())
    assert set(groups) == {"displayName", "members"}
    members = {s["name"]: s for s in groups["members"]["subAttributes"]}
    assert set(members) == {"value", "$ref", "type"}

    schemas = acme.get("/Schemas").get_json()
    assert {s["id"] for s in schemas["Resources"]} == {USER_SCHEMA, GROUP_SCHEMA}
    assert_scim_error(acme.get(f"/Schemas/{ENTERPRISE}"), 404)
    types = {t["id"]: t for t in acme.get("/ResourceTypes").get_json()["Resources"]}
    assert types["User"]["schema"] == USER_SCHEMA and not types["User"].get("schemaExtensions")

    config = acme.get("/ServiceProviderConfig").get_json()
    assert config["etag"]["supported"] is True
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["sort"]["supported"] is False and config["bulk"]["supported"] is False
    assert config["changePassword"]["supported"] is False


# ---------------------------------------------------------------- users round-trip


def test_writable_user_attributes_round_trip_through_post_put_and_patch(app, scim_org):
    acme = scim_org("acme")
    sent = {
        "schemas": [USER_SCHEMA],
        "userName": "Kim@Acme.example",
        "displayName": "Kim K.",
        "name": {"givenName": "Kim", "familyName": "Kale"},
        "externalId": "ext-1",
        "active": True,
    }
    created = acme.post("/Users", sent).get_json()
    uid = created["id"]
    assert created["userName"] == "kim@acme.example"  # userName is case-insensitive
    assert created["displayName"] == "Kim K." and created["externalId"] == "ext-1"
    assert created["name"] == {"givenName": "Kim", "familyName": "Kale"}
    assert created["emails"] == [{"value": "kim@acme.example", "type": "work", "primary": True}]
    assert acme.get(f"/Users/{uid}").get_json() == created

    # PUT replaces: what is left out is unassigned (active, left out, is kept).
    put = acme.put(
        f"/Users/{uid}",
        {"schemas": [USER_SCHEMA], "userName": "kim@acme.example", "displayName": "K"},
    ).get_json()
    assert put["displayName"] == "K" and put["active"] is True
    assert "name" not in put and "externalId" not in put
    assert row(app, User, int(uid))["given_name"] is None

    steps = [
        (
            {"op": "add", "path": "name", "value": {"givenName": "A", "familyName": "B"}},
            "name",
            {"givenName": "A", "familyName": "B"},
        ),
        (
            {"op": "replace", "path": "name.givenName", "value": "C"},
            "name",
            {"givenName": "C", "familyName": "B"},
        ),
        ({"op": "remove", "path": "name.familyName"}, "name", {"givenName": "C"}),
        ({"op": "remove", "path": "name"}, "name", None),
        ({"op": "replace", "path": "displayName", "value": "Dee"}, "displayName", "Dee"),
        ({"op": "remove", "path": "displayName"}, "displayName", None),
        ({"op": "add", "path": "externalId", "value": "x-2"}, "externalId", "x-2"),
        ({"op": "remove", "path": "externalId"}, "externalId", None),
        ({"op": "replace", "path": "active", "value": False}, "active", False),
        ({"op": "replace", "value": {"active": True, "displayName": "E"}}, "displayName", "E"),
        (
            {"op": "replace", "path": "userName", "value": "kim2@acme.example"},
            "userName",
            "kim2@acme.example",
        ),
    ]
    for operation, attribute, expected in steps:
        answer = acme.patch(f"/Users/{uid}", operation)
        assert answer.status_code == 200, (operation, answer.get_json())
        assert answer.get_json().get(attribute) == expected, operation
        assert acme.get(f"/Users/{uid}").get_json().get(attribute) == expected, operation
    stored = row(app, User, int(uid))
    assert stored["email"] == "kim2@acme.example" and stored["is_active"] is True


def test_without_display_name_a_new_person_is_named_from_name(app, scim_org):
    acme = scim_org("acme")
    made = _user(acme, name={"givenName": "Ann", "familyName": "Lee"})
    assert made["displayName"] == "Ann Lee"
    formatted = _user(acme, "b@acme.example", name={"formatted": "Dr B. Bee", "givenName": "B"})
    assert formatted["displayName"] == "Dr B. Bee" and formatted["name"] == {"givenName": "B"}
    bare = _user(acme, "c@acme.example")
    assert "displayName" not in bare and "name" not in bare and bare["active"] is True


def test_attributes_not_kept_are_ignored_everywhere_and_other_paths_refused(app, scim_org):
    acme = scim_org("acme")
    made = _user(
        acme,
        title="Boss",
        phoneNumbers=[{"value": "+44 1", "type": "work"}],
        emails=[{"value": "other@acme.example", "type": "home"}],
        **{"schemas": [USER_SCHEMA, ENTERPRISE], ENTERPRISE: {"department": "Sales"}},
    )
    uid = made["id"]
    assert not {"title", "phoneNumbers", ENTERPRISE} & set(made)
    assert made["emails"][0]["value"] == "pat@acme.example"
    before = acme.get(f"/Users/{uid}").get_json()

    # Standard attributes the portal does not keep (and does not advertise) are ignored
    # in a PATCH as in POST and PUT, as identity providers' default mappings send them;
    # the operation on a kept attribute beside them is applied.
    ignored = [
        {"op": "replace", "path": "title", "value": "Boss"},
        {"op": "add", "path": "phoneNumbers", "value": [{"value": "+44 1"}]},
        {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "x"},
        {"op": "replace", "value": {"title": "Boss", ENTERPRISE: {"department": "x"}}},
        {"op": "replace", "path": "name.formatted", "value": "x"},
        {"op": "add", "path": "emails", "value": [{"value": "z@acme.example"}]},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "z@acme.example"},
    ]
    for number, operation in enumerate(ignored):
        answer = acme.patch(
            f"/Users/{uid}",
            {"op": "replace", "path": "displayName", "value": f"Changed {number}"},
            operation,
        )
        assert answer.status_code == 200, (operation, answer.get_json())
        body = acme.get(f"/Users/{uid}").get_json()
        assert body["displayName"] == f"Changed {number}"
        assert not {"title", "phoneNumbers", ENTERPRISE} & set(body)
        assert body["emails"] == before["emails"] and body["userName"] == before["userName"]
    # A PATCH of nothing but such attributes changes nothing and answers 200.
    only = acme.patch(f"/Users/{uid}", {"op": "replace", "path": "title", "value": "Boss"})
    assert only.status_code == 200
    assert only.get_json()["displayName"] == f"Changed {len(ignored) - 1}"
    before = acme.get(f"/Users/{uid}").get_json()

    refused = [
        ({"op": "replace", "path": "shoeSize", "value": "44"}, "invalidPath"),
        ({"op": "replace", "path": "name.shoeSize", "value": "x"}, "invalidPath"),
        ({"op": "replace", "value": {"shoeSize": "44"}}, "invalidValue"),
        ({"op": "replace", "path": "groups", "value": []}, "mutability"),
        ({"op": "remove", "path": "active"}, "mutability"),
        ({"op": "remove", "path": "userName"}, "mutability"),
    ]
    for operation, scim_type in refused:
        # A refused operation refuses the whole PATCH: the valid one beside it is not applied.
        answer = acme.patch(
            f"/Users/{uid}", {"op": "replace", "path": "displayName", "value": "Changed"}, operation
        )
        assert_scim_error(answer, 400, scim_type)
    assert acme.get(f"/Users/{uid}").get_json() == before


def test_values_past_what_the_portal_stores_are_refused_not_cut(app, scim_org):
    acme = scim_org("acme")
    uid = _user(acme)["id"]
    too_long = [
        {"op": "replace", "path": "displayName", "value": "d" * 201},
        {"op": "replace", "path": "name.givenName", "value": "g" * 101},
        {"op": "replace", "path": "externalId", "value": "e" * 256},
    ]
    for operation in too_long:
        assert_scim_error(acme.patch(f"/Users/{uid}", operation), 400, "invalidValue")
    assert (
        acme.patch(
            f"/Users/{uid}", {"op": "replace", "path": "displayName", "value": "d" * 200}
        ).status_code
        == 200
    )
    assert_scim_error(
        acme.post(
            "/Users",
            {"schemas": [USER_SCHEMA], "userName": "q@acme.example", "displayName": "x" * 201},
        ),
        400,
        "invalidValue",
    )
    assert acme.get("/Users", filter='userName eq "q@acme.example"').get_json()["totalResults"] == 0
    gid = acme.post("/Groups", {"displayName": "G"}).get_json()["id"]
    assert_scim_error(
        acme.patch(f"/Groups/{gid}", {"op": "add", "path": "externalId", "value": "e" * 256}), 400
    )
    assert_scim_error(
        acme.patch(f"/Groups/{gid}", {"op": "add", "path": "externalId", "value": 5}), 400
    )
    assert acme.get(f"/Groups/{gid}").get_json().get("externalId") is None


def test_a_nul_byte_in_an_attribute_is_a_scim_400_that_changes_nothing(app, scim_org):
    acme = scim_org("acme")
    uid = _user(acme)["id"]
    before = acme.get(f"/Users/{uid}").get_json()
    answer = acme.patch(
        f"/Users/{uid}", {"op": "replace", "path": "displayName", "value": "a\x00b"}
    )
    assert_scim_error(answer, 400)
    put = acme.put(
        f"/Users/{uid}",
        {"schemas": [USER_SCHEMA], "userName": "pat@acme.example", "externalId": "\x00"},
    )
    assert_scim_error(put, 400)
    assert_scim_error(acme.post("/Groups", {"displayName": "nul\x00group"}), 400)
    assert_scim_error(acme.get("/Users", filter='userName eq "a\x00"'), 400)
    assert acme.get(f"/Users/{uid}").get_json() == before
    assert acme.get("/Groups").get_json()["totalResults"] == 0


# ---------------------------------------------------------------- groups


def test_group_members_carry_type_and_ref(app, scim_org):
    acme = scim_org("acme")
    uid = _user(acme)["id"]
    created = acme.post(
        "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Eng", "members": [{"value": uid}]}
    ).get_json()
    member = {"value": uid, "$ref": f"http://portal.test/scim/v2/Users/{uid}", "type": "User"}
    assert created["members"] == [member]
    assert acme.get(f"/Groups/{created['id']}").get_json()["members"] == [member]
    groups = acme.get(f"/Users/{uid}").get_json()["groups"]
    assert groups == [
        {
            "value": created["id"],
            "$ref": f"http://portal.test/scim/v2/Groups/{created['id']}",
            "display": "Eng",
        }
    ]
    assert_scim_error(
        acme.patch(f"/Groups/{created['id']}", {"op": "remove", "path": "displayName"}),
        400,
        "mutability",
    )
    nested = acme.post(
        "/Groups", {"displayName": "Outer", "members": [{"value": created["id"], "type": "Group"}]}
    )
    assert_scim_error(nested, 400, "invalidValue")


# ---------------------------------------------------------------- ETags


def test_if_match_is_honoured_on_put_patch_and_delete(app, scim_org):
    acme = scim_org("acme")
    first = acme.client.post(
        "/scim/v2/Users",
        json={"schemas": [USER_SCHEMA], "userName": "pat@acme.example"},
        headers={"Authorization": f"Bearer {acme.token}"},
    )
    uid, version = first.get_json()["id"], first.headers["ETag"]
    assert version.startswith('W/"') and first.get_json()["meta"]["version"] == version

    def send(method, path, body=None, **headers):
        return acme.client.open(
            f"/scim/v2{path}",
            method=method,
            json=body,
            headers={"Authorization": f"Bearer {acme.token}", **headers},
        )

    rename = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "One"}],
    }
    done = send("PATCH", f"/Users/{uid}", rename, **{"If-Match": version})
    assert done.status_code == 200
    newer = done.headers["ETag"]
    assert newer != version

    stale = [
        send(
            "PATCH",
            f"/Users/{uid}",
            rename | {"Operations": [{"op": "replace", "path": "displayName", "value": "Two"}]},
            **{"If-Match": version},
        ),
        send(
            "PUT",
            f"/Users/{uid}",
            {"schemas": [USER_SCHEMA], "userName": "pat@acme.example"},
            **{"If-Match": version},
        ),
        send("DELETE", f"/Users/{uid}", **{"If-Match": version}),
        send("DELETE", f"/Users/{uid}", **{"If-Match": '"something-else", W/"nope"'}),
    ]
    for answer in stale:
        body = assert_scim_error(answer, 412)
        assert newer in body["detail"]
    kept = acme.get(f"/Users/{uid}").get_json()
    assert kept["displayName"] == "One" and kept["meta"]["version"] == newer

    # Weak and strong spellings of the current version both match; so does *.
    strong = newer.removeprefix("W/")
    again = send(
        "PATCH",
        f"/Users/{uid}",
        rename | {"Operations": [{"op": "replace", "path": "displayName", "value": "Three"}]},
        **{"If-Match": f'"x", {strong}'},
    )
    assert again.status_code == 200 and again.get_json()["displayName"] == "Three"
    assert (
        send("GET", f"/Users/{uid}", **{"If-None-Match": again.headers["ETag"]}).status_code == 304
    )
    assert send("GET", f"/Users/{uid}", **{"If-None-Match": newer}).status_code == 200
    assert send("DELETE", f"/Users/{uid}", **{"If-Match": "*"}).status_code == 204


def test_a_group_version_changes_with_its_members_and_if_match_guards_it(app, scim_org):
    acme = scim_org("acme")
    uid = _user(acme)["id"]
    made = acme.post("/Groups", {"displayName": "Ops"})
    gid, version = made.get_json()["id"], made.headers["ETag"]
    user_version = acme.get(f"/Users/{uid}").headers["ETag"]
    added = acme.patch(
        f"/Groups/{gid}", {"op": "add", "path": "members", "value": [{"value": uid}]}
    )
    assert added.status_code == 204 and added.headers["ETag"] != version
    # The person's representation (their groups) changed too, and so did its version.
    assert acme.get(f"/Users/{uid}").headers["ETag"] != user_version

    stale_put = acme.client.put(
        f"/scim/v2/Groups/{gid}",
        json={"schemas": [GROUP_SCHEMA], "displayName": "Renamed", "members": []},
        headers={"Authorization": f"Bearer {acme.token}", "If-Match": version},
    )
    assert_scim_error(stale_put, 412)
    stale_delete = acme.client.delete(
        f"/scim/v2/Groups/{gid}",
        headers={"Authorization": f"Bearer {acme.token}", "If-Match": version},
    )
    assert_scim_error(stale_delete, 412)
    current = acme.get(f"/Groups/{gid}").get_json()
    assert current["displayName"] == "Ops" and [m["value"] for m in current["members"]] == [uid]
    assert row(app, ScimGroup, int(gid))["display_name"] == "Ops"


# ---------------------------------------------------------------- search


def test_search_by_post_matches_get(app, scim_org):
    acme = scim_org("acme")
    for i in range(4):
        _user(acme, f"s{i}@acme.example", displayName=f"Person {i}")
    gid = acme.post("/Groups", {"displayName": "Searchers"}).get_json()["id"]
    query = {
        "filter": 'displayName sw "Person"',
        "startIndex": "2",
        "count": "2",
        "attributes": "userName",
    }
    by_get = acme.get("/Users", **query).get_json()
    by_post = acme.post(
        "/Users/.search",
        {
            "schemas": [SEARCH],
            "filter": 'displayName sw "Person"',
            "startIndex": 2,
            "count": 2,
            "attributes": ["userName"],
        },
    )
    assert by_post.status_code == 200
    assert by_post.get_json() == by_get
    assert by_get["totalResults"] == 4 and [r["userName"] for r in by_get["Resources"]] == [
        "s1@acme.example",
        "s2@acme.example",
    ]
    assert set(by_get["Resources"][0]) == {"schemas", "id", "meta", "userName"}

    groups = acme.post(
        "/Groups/.search", {"schemas": [SEARCH], "filter": 'displayName eq "searchers"'}
    ).get_json()
    assert groups["totalResults"] == 1 and groups["Resources"][0]["id"] == gid

    # At the root: people, then groups, paged as one list; a filter only groups have
    # matches no people.
    everything = acme.post(
        "/.search", {"schemas": [SEARCH], "startIndex": 4, "count": 2}
    ).get_json()
    assert everything["schemas"] == [LIST] and everything["totalResults"] == 5
    assert [r["schemas"][0] for r in everything["Resources"]] == [USER_SCHEMA, GROUP_SCHEMA]
    only_groups = acme.post(
        "/.search", {"schemas": [SEARCH], "filter": 'members pr or displayName eq "Searchers"'}
    ).get_json()
    assert [r["id"] for r in only_groups["Resources"]] == [gid]
    assert_scim_error(
        acme.post("/.search", {"schemas": [SEARCH], "filter": 'title eq "x"'}), 400, "invalidFilter"
    )
    # Only what is advertised can be filtered on.
    assert_scim_error(acme.get("/Users", filter='name.formatted eq "x"'), 400, "invalidFilter")


def test_bad_searches_and_pages_get_scim_errors(app, scim_org):
    acme = scim_org("acme")
    _user(acme)
    assert_scim_error(
        acme.post("/Users/.search", {"filter": 'userName eq "x"'}), 400, "invalidSyntax"
    )
    assert_scim_error(acme.post("/Users/.search", ["not", "an", "object"]), 400, "invalidSyntax")
    assert_scim_error(
        acme.post("/Users/.search", {"schemas": [SEARCH], "filter": "userName eq"}),
        400,
        "invalidFilter",
    )
    assert_scim_error(acme.post("/Users/.search", {"schemas": [SEARCH], "count": "many"}), 400)
    assert_scim_error(
        acme.post(
            "/Users/.search",
            {"schemas": [SEARCH], "attributes": ["userName"], "excludedAttributes": ["active"]},
        ),
        400,
    )
    # Pages far past the end (past 64 bits too) are empty, not errors.
    for start in ("9223372036854775808", str(10**30)):
        page = acme.get("/Users", startIndex=start).get_json()
        assert page["totalResults"] == 1 and page["Resources"] == []
    searched = acme.post(
        "/Users/.search", {"schemas": [SEARCH], "startIndex": 10**30, "count": 10**30}
    ).get_json()
    assert searched["Resources"] == [] and searched["totalResults"] == 1
    assert_scim_error(acme.get("/Users/.search"), 404)  # a search is a POST


def test_if_match_holds_under_concurrent_writers(app, scim_org):
    """Eight identity-provider workers PATCH with the same version at once: one wins, the
    others get 412 (the row is locked from the version check to the commit)."""
    acme = scim_org("acme")
    uid = _user(acme)["id"]
    version = acme.get(f"/Users/{uid}").headers["ETag"]
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def write(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        answer = client.patch(
            f"/scim/v2/Users/{uid}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": f"W{i}"}],
            },
            headers={"Authorization": f"Bearer {acme.token}", "If-Match": version},
        )
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] + [412] * 7, statuses
