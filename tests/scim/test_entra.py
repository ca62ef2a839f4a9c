"""SCIM as Microsoft Entra ID drives it: the requests of Microsoft's "Develop and plan
provisioning for a SCIM endpoint" guide (query by userName before creating, create with the
enterprise extension, PATCH with capitalised ops and value paths, disable with "False",
groups with excludedAttributes=members, members added and removed by value lists)."""

from __future__ import annotations

from portal.identity.models import User
from tests.scim.conftest import ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA, assert_scim_error
from tests.support import row

ENTRA_USER = {
    "schemas": [USER_SCHEMA, ENTERPRISE],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_ab6490ee@acme.example",
    "active": True,
    "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@acme.example"}],
    "meta": {"resourceType": "User"},
    "name": {
        "formatted": "givenName familyName",
        "familyName": "familyName",
        "givenName": "givenName",
    },
    "roles": [],
    ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"},
}


def test_entra_user_lifecycle(app, scim_org):
    entra = scim_org("acme")
    query = 'userName eq "Test_User_ab6490ee@acme.example"'
    assert entra.get("/Users", filter=query).get_json()["totalResults"] == 0

    created = entra.post("/Users", ENTRA_USER)
    assert created.status_code == 201, created.get_json()
    user = created.get_json()
    uid = user["id"]
    assert user["userName"] == "test_user_ab6490ee@acme.example"
    assert user["externalId"] == ENTRA_USER["externalId"]

    found = entra.get("/Users", filter=query).get_json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == uid
    by_external = entra.get("/Users", filter=f'externalId eq "{ENTRA_USER["externalId"]}"')
    assert by_external.get_json()["totalResults"] == 1

    # The enterprise extension is neither kept nor advertised: Entra's default mapping
    # sends it, and the rest of the PATCH is applied while the department is ignored.
    updated = entra.patch(
        f"/Users/{uid}",
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Sales"},
        {"op": "Add", "path": "externalId", "value": "new-external-id"},
    )
    assert updated.status_code == 200, updated.get_json()
    assert updated.get_json()["name"]["familyName"] == "updatedFamilyName"
    assert updated.get_json()["externalId"] == "new-external-id"

    # Entra has sent booleans as strings; "False" disables.
    disabled = entra.patch(f"/Users/{uid}", {"op": "Replace", "path": "active", "value": "False"})
    assert disabled.status_code == 200 and disabled.get_json()["active"] is False
    assert row(app, User, int(uid))["is_active"] is False
    enabled = entra.patch(f"/Users/{uid}", {"op": "Replace", "path": "active", "value": True})
    assert enabled.get_json()["active"] is True

    assert entra.delete(f"/Users/{uid}").status_code == 204
    assert_scim_error(entra.get(f"/Users/{uid}"), 404)
    assert entra.get("/Users", filter=query).get_json()["totalResults"] == 0
    kept = row(app, User, int(uid))
    assert kept["is_active"] is False and kept["scim_deleted_at"] is not None

    # Provisioned again later: the same account comes back, active.
    again = entra.post("/Users", ENTRA_USER)
    assert again.status_code == 201 and again.get_json()["id"] == uid
    assert again.get_json()["active"] is True


def test_entra_groups(app, scim_org):
    entra = scim_org("acme")
    uid = entra.post("/Users", ENTRA_USER).get_json()["id"]
    created = entra.post(
        "/Groups",
        {
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
            "schemas": [GROUP_SCHEMA],
            "members": [],
        },
    )
    assert created.status_code == 201
    gid = created.get_json()["id"]
    without = entra.get(f"/Groups/{gid}", excludedAttributes="members").get_json()
    assert "members" not in without and without["displayName"] == "displayName"
    listed = entra.get(
        "/Groups", excludedAttributes="members", filter='displayName eq "displayName"'
    ).get_json()
    assert listed["totalResults"] == 1 and "members" not in listed["Resources"][0]

    added = entra.patch(
        f"/Groups/{gid}", {"op": "Add", "path": "members", "value": [{"$ref": None, "value": uid}]}
    )
    assert added.status_code == 204
    assert [m["value"] for m in entra.get(f"/Groups/{gid}").get_json()["members"]] == [uid]
    member_query = entra.get("/Groups", filter=f'members[value eq "{uid}"]').get_json()
    assert member_query["totalResults"] == 1

    removed = entra.patch(
        f"/Groups/{gid}",
        {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": uid}]},
    )
    assert removed.status_code == 204
    assert entra.get(f"/Groups/{gid}").get_json()["members"] == []
    renamed = entra.patch(
        f"/Groups/{gid}", {"op": "Replace", "path": "displayName", "value": "1879db59"}
    )
    assert renamed.status_code == 204
    assert entra.get(f"/Groups/{gid}").get_json()["displayName"] == "1879db59"
    assert entra.delete(f"/Groups/{gid}").status_code == 204


def test_discovery_endpoints(app, scim_org):
    entra = scim_org("acme")
    config = entra.get("/ServiceProviderConfig").get_json()
    assert config["patch"]["supported"] is True and config["bulk"]["supported"] is False
    assert config["filter"]["supported"] is True and config["filter"]["maxResults"] == 200
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = entra.get("/ResourceTypes").get_json()
    assert {r["id"] for r in types["Resources"]} == {"User", "Group"}
    assert entra.get("/ResourceTypes/User").get_json()["endpoint"] == "/Users"
    schemas = entra.get("/Schemas").get_json()
    ids = {s["id"] for s in schemas["Resources"]}
    assert ids == {USER_SCHEMA, GROUP_SCHEMA}  # the enterprise extension is not kept
    user_schema = entra.get(f"/Schemas/{USER_SCHEMA}").get_json()
    assert any(a["name"] == "userName" for a in user_schema["attributes"])
