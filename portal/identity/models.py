"""Accounts, their server-side sign-in sessions and invitations."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import (
    Base,
    BigIntId,
    MixedTenantMixin,
    TenantKey,
    TimestampMixin,
    UTCDateTime,
    enum_column,
)
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.tenancy.models import Organisation


class InvitationState(enum.StrEnum):
    """Where an invitation stands (kept as its timestamps, not as a column)."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


class User(MixedTenantMixin, TimestampMixin, Base):
    """A person who signs in. Council staff have no organisation; everyone else has one."""

    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('council_admin', 'finance', 'org_admin', 'member', 'vendor_admin')",
            name="role_known",
        ),
        # Council roles belong to no organisation; organisation roles to exactly one; a
        # vendor admin (SPEC 8.1) to no organisation and exactly one vendor.
        sa.CheckConstraint(
            "(role IN ('council_admin', 'finance') AND organisation_id IS NULL "
            "AND vendor_id IS NULL) OR "
            "(role IN ('org_admin', 'member') AND organisation_id IS NOT NULL "
            "AND vendor_id IS NULL) OR "
            "(role = 'vendor_admin' AND organisation_id IS NULL AND vendor_id IS NOT NULL)",
            name="role_matches_organisation",
        ),
        # One account per provider subject within an organisation.
        sa.UniqueConstraint("organisation_id", "sso_subject", name="uq_users_org_sso_subject"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False, default="")
    role: Mapped[Role] = mapped_column(enum_column(Role, 20), nullable=False)
    # A vendor admin's vendor (SPEC 8.1); none for every other role.
    vendor_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="RESTRICT"), index=True
    )
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Single sign-on and SCIM: the provider's subject for this person (bound at the
    # first SSO sign-in), the SCIM client's externalId and name parts, and when the
    # SCIM client deleted the account (kept, deactivated, for seat history and audit).
    sso_subject: Mapped[str | None] = mapped_column(sa.String(255))
    external_id: Mapped[str | None] = mapped_column(sa.String(255))
    given_name: Mapped[str | None] = mapped_column(sa.String(100))
    family_name: Mapped[str | None] = mapped_column(sa.String(100))
    scim_deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The language the person chose (portal.kernel.i18n.LANGUAGES); none: the browser's.
    locale: Mapped[str | None] = mapped_column(sa.String(8))

    organisation: Mapped[Organisation | None] = relationship(lazy="joined")

    @property
    def role_enum(self) -> Role:
        return Role(self.role)

    @property
    def is_council(self) -> bool:
        return self.role_enum.is_council

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"


class UserSession(MixedTenantMixin, Base):
    """A server-side record of one signed-in browser session.

    The session cookie carries only this row's random id; signing out or
    deactivating an account revokes the row, so a copied old cookie stops working.
    """

    __tablename__ = "user_sessions"
    __tenant_key__ = TenantKey(ondelete="CASCADE")

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # Tenant column kept beside the user for scoped queries; empty for council staff.
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, nullable=False)
    last_seen_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=now_utc, nullable=False
    )
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    # How this session was authenticated: "pwd", "pwd+otp", "pwd+recovery",
    # "pwd+passkey" or "sso" (then the provider's own amr and acr claims, if it sent them).
    amr: Mapped[str | None] = mapped_column(sa.String(32))
    sso_amr: Mapped[str | None] = mapped_column(sa.String(200))
    sso_acr: Mapped[str | None] = mapped_column(sa.String(200))

    user: Mapped[User] = relationship(lazy="joined")


class Invitation(MixedTenantMixin, Base):
    """A single-use, expiring invitation to create an account with a role."""

    __tablename__ = "invitations"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('council_admin', 'finance', 'org_admin', 'member', 'vendor_admin')",
            name="role_known",
        ),
        sa.CheckConstraint(
            "(role IN ('council_admin', 'finance') AND organisation_id IS NULL "
            "AND vendor_id IS NULL) OR "
            "(role IN ('org_admin', 'member') AND organisation_id IS NOT NULL "
            "AND vendor_id IS NULL) OR "
            "(role = 'vendor_admin' AND organisation_id IS NULL AND vendor_id IS NOT NULL)",
            name="role_matches_organisation",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), nullable=False, index=True)
    role: Mapped[Role] = mapped_column(enum_column(Role, 20), nullable=False)
    vendor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vendors.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    invited_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    organisation: Mapped[Organisation | None] = relationship(lazy="joined")
    invited_by: Mapped[User | None] = relationship(lazy="joined")

    @property
    def state(self) -> InvitationState:
        if self.accepted_at:
            return InvitationState.ACCEPTED
        if self.revoked_at:
            return InvitationState.REVOKED
        if self.expires_at <= now_utc():
            return InvitationState.EXPIRED
        return InvitationState.PENDING


# ---------------------------------------------------------------- second factors


class TotpFactor(MixedTenantMixin, Base):
    """A person's authenticator app (RFC 6238 TOTP): one per account.

    The shared secret is sealed with ``PORTAL_ENCRYPTION_KEY`` (:mod:`portal.crypto`);
    it counts as a second factor only once confirmed with a code. ``last_used_step``
    is the 30-second step of the last code accepted, so a code is never taken twice.
    """

    __tablename__ = "totp_factors"
    # organisation_id: the user's, kept beside it for scoped queries; empty for council staff.
    __tenant_key__ = TenantKey(ondelete="CASCADE")

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    secret_encrypted: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, nullable=False)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_step: Mapped[int | None] = mapped_column(sa.BigInteger)


class RecoveryCode(MixedTenantMixin, Base):
    """One of a person's ten single-use recovery codes, kept only as a keyed digest."""

    __tablename__ = "recovery_codes"
    __tenant_key__ = TenantKey(ondelete="CASCADE")

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Passkey(MixedTenantMixin, Base):
    """A WebAuthn credential (a passkey or security key) a person signs in with as a second factor.

    ``credential_id`` is the authenticator's credential id, base64url without padding;
    ``public_key`` the COSE public key it registered. ``sign_count`` is the last counter
    the authenticator reported: a later sign-in must report more (or 0, for authenticators
    that keep no counter), else the credential may have been cloned and is refused.
    """

    __tablename__ = "passkeys"
    # organisation_id: the user's, kept beside it for scoped queries; empty for council staff.
    __tenant_key__ = TenantKey(ondelete="CASCADE")

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    credential_id: Mapped[str] = mapped_column(sa.String(1400), unique=True, nullable=False)
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    sign_count: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    # How the browser may reach the authenticator ("internal,hybrid", "usb", ...).
    transports: Mapped[str | None] = mapped_column(sa.String(200))
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, nullable=False)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
