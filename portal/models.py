"""Imports every model so the metadata (and Alembic) sees all tables.

Each table is listed in :data:`TABLE_SCOPES` as tenant-owned (``organisation_id
NOT NULL``), mixed (a nullable ``organisation_id``: council staff rows have
none) or council-wide. ``tests/test_tenancy_scope.py`` fails when a table is
missing from this map or breaks its scope.
"""

from portal.audit.models import AuditEvent  # noqa: F401
from portal.identity.models import Invitation, User, UserSession  # noqa: F401
from portal.tenancy.models import Organisation  # noqa: F401

TENANT = "tenant"
MIXED = "mixed"
COUNCIL = "council"

TABLE_SCOPES: dict[str, str] = {
    "organisations": COUNCIL,  # the tenants themselves
    "users": MIXED,  # council staff have no organisation
    "user_sessions": MIXED,
    "invitations": MIXED,  # council staff invitations have no organisation
    "audit_events": MIXED,  # council-wide changes have no organisation
}
