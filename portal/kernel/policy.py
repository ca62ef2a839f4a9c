"""Who may do what: every protected operation, and one table answering for each role.

Services, pages, the API and SCIM ask the same question here: "may this actor
do this to this object?" (:func:`allowed`), or insist on it (:func:`require`).
The answer comes from :data:`RULES`, a table ``{Role: {Action: Reach}}`` that is
also the documentation of the roles (SPEC sections 2 and 8.1):

* :attr:`Reach.ANY`: every object of the kind (council staff);
* :attr:`Reach.OWN_ORGANISATION`: objects of the actor's own organisation only;
* :attr:`Reach.OWN_VENDOR`: objects of the actor's own vendor only;
* :attr:`Reach.SELF`: the actor's own account only.

Authorization fails closed (SPEC invariant 10): an anonymous actor may do only
what :data:`PUBLIC` lists; an actor without a role, with a role the table does
not know, or asking for an action the table does not list is refused. A system
actor (a job, the CLI, a webhook) may do everything within its scope: council-wide,
or one organisation's objects only. A token may do only what its kind is for
(:data:`KIND_LIMITS`: a SCIM token provisions people and nothing else).

:func:`require` raises :class:`~portal.kernel.errors.NotFound` rather than
:class:`~portal.kernel.errors.PermissionDenied` when the object belongs to
another organisation (or vendor) than the actor's: to them it does not exist.

To add an action: name it in :class:`Action` (``<object>.<verb>``), give it a
line in each role's rules that may do it (a role that may not simply has no line),
call ``policy.require(actor, Action.X, organisation_id=…)`` in the service, and map
it to its page and API endpoint in ``tests/test_permission_matrix.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from portal.kernel.actor import Actor, ActorKind, Role
from portal.kernel.errors import NotFound, PermissionDenied
from portal.kernel.i18n import _l


class Action(enum.StrEnum):
    """Every protected operation, as ``<object>.<verb>``."""

    # organisations (tenants)
    ORGANISATION_APPLY = "organisation.apply"  # the public membership application
    ORGANISATION_CREATE = "organisation.create"
    ORGANISATION_READ = "organisation.read"
    ORGANISATION_UPDATE = "organisation.update"  # an org admin: contact fields only
    ORGANISATION_TRANSITION = "organisation.transition"  # approve, suspend, reinstate, close
    # people
    USER_READ = "user.read"
    USER_CREATE = "user.create"
    USER_INVITE = "user.invite"
    USER_INVITATION_REVOKE = "user.invitation_revoke"
    USER_CHANGE_ROLE = "user.change_role"
    USER_SET_ACTIVE = "user.set_active"
    USER_PROFILE_UPDATE = "user.profile_update"
    USER_PASSWORD_CHANGE = "user.password_change"  # noqa: S105 (an action, not a secret)
    USER_SECOND_FACTOR_MANAGE = "user.second_factor_manage"  # enrol / remove one's own
    USER_SECOND_FACTOR_RESET = "user.second_factor_reset"  # lost-factor recovery
    # sign-in sessions
    SESSION_READ = "session.read"
    SESSION_REVOKE = "session.revoke"
    # vendors, catalogue, pools, prices
    VENDOR_READ = "vendor.read"
    VENDOR_CREATE = "vendor.create"
    VENDOR_UPDATE = "vendor.update"
    CATALOGUE_READ = "catalogue.read"
    CATALOGUE_PRODUCT_CREATE = "catalogue.product_create"
    CATALOGUE_PRODUCT_UPDATE = "catalogue.product_update"
    CATALOGUE_METER_CREATE = "catalogue.meter_create"
    POOL_READ = "pool.read"
    POOL_CREATE = "pool.create"
    POOL_UPDATE = "pool.update"
    PRICE_CREATE = "price.create"
    # subscriptions and seats
    SUBSCRIPTION_READ = "subscription.read"
    SUBSCRIPTION_CREATE = "subscription.create"
    SUBSCRIPTION_BACKDATE = "subscription.backdate"  # a start date other than today
    SUBSCRIPTION_RESIZE = "subscription.resize"
    SUBSCRIPTION_CANCEL = "subscription.cancel"
    SUBSCRIPTION_WAITLIST_FILL = "subscription.waitlist_fill"
    SEAT_READ_OWN = "seat.read_own"  # "My software"
    SEAT_ASSIGN = "seat.assign"
    SEAT_RELEASE = "seat.release"
    SEAT_REQUEST = "seat.request"  # a person asks for a seat for themselves
    SEAT_REQUEST_DECIDE = "seat.request_decide"
    SEAT_IDLE_DECIDE = "seat.idle_decide"  # keep or release an idle seat
    # usage
    USAGE_REPORT = "usage.report"
    USAGE_READ = "usage.read"
    ENTITLEMENT_CHECK = "usage.entitlement_check"
    # invoices, credit notes, payments, exports
    INVOICE_READ = "invoice.read"
    INVOICE_RUN = "invoice.run"
    INVOICE_DRAFT = "invoice.draft"  # refresh or recompute a draft
    INVOICE_FINALIZE = "invoice.finalize"
    INVOICE_VOID = "invoice.void"
    INVOICE_MARK_UNCOLLECTIBLE = "invoice.mark_uncollectible"
    CREDIT_NOTE_CREATE = "credit_note.create"
    PAYMENT_RECORD = "payment.record"
    PAYMENT_IMPORT_BANK = "payment.import_bank"
    PAYMENT_METHOD_MANAGE = "payment.method_manage"
    PAYMENT_RETRY = "payment.retry"
    EXPORT_READ = "export.read"
    # council settings
    SETTINGS_READ = "settings.read"
    SETTINGS_UPDATE = "settings.update"
    # API tokens, SCIM tokens and provisioning, single sign-on
    TOKEN_READ = "token.read"  # noqa: S105 (an action, not a secret)
    TOKEN_CREATE = "token.create"  # noqa: S105 (an action, not a secret)
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 (an action, not a secret)
    SCIM_TOKEN_READ = "scim_token.read"  # noqa: S105 (an action, not a secret)
    SCIM_TOKEN_CREATE = "scim_token.create"  # noqa: S105 (an action, not a secret)
    SCIM_TOKEN_REVOKE = "scim_token.revoke"  # noqa: S105 (an action, not a secret)
    SCIM_PROVISION = "scim.provision"  # users, groups, group → product mappings
    SSO_READ = "sso.read"
    SSO_CONFIGURE = "sso.configure"  # the connection, email domain claims
    SSO_TEST = "sso.test"  # a test sign-in with the organisation's provider
    SSO_DOMAIN_VERIFY = "sso.domain_verify"
    SSO_PROVISION = "sso.provision"  # an account created for a seat or a JIT sign-in
    # background jobs (the council's Jobs page)
    JOB_READ = "job.read"
    JOB_MANAGE = "job.manage"  # retry or cancel a job
    JOB_RUN = "job.run"  # the work of a queued or scheduled job: the system's only
    # suppliers online (SPEC 8.2, issue 15)
    SUPPLIER_READ = "supplier.read"  # the supplier directory: every signed-in person
    VENDOR_PROFILE_UPDATE = "vendor.profile_update"  # a vendor admin: its own profile
    VENDOR_SERVICE_STATUS_SET = "vendor.service_status_set"
    VENDOR_INCIDENT_MANAGE = "vendor.incident_manage"  # open, update, resolve
    VENDOR_DOCUMENT_READ = "vendor.document_read"  # compliance documents
    VENDOR_DOCUMENT_MANAGE = "vendor.document_manage"
    VENDOR_SEATS_READ = "vendor.seats_read"  # its products' pools and seat counts
    VENDOR_USAGE_HEALTH_READ = "vendor.usage_health_read"  # usage reporting health
    NOTIFICATION_READ = "notification.read"  # one's own notifications
    # procurement (SPEC 8.3, issue 16)
    DEMAND_READ = "demand.read"
    PRODUCT_REQUEST_CREATE = "product_request.create"  # ask for a product not in the catalogue
    PRODUCT_REQUEST_READ = "product_request.read"
    PRODUCT_REQUEST_DECIDE = "product_request.decide"  # merge duplicates, answer
    PURCHASE_ORDER_READ = "purchase_order.read"
    PURCHASE_ORDER_DRAFT = "purchase_order.draft"  # create and edit drafts
    PURCHASE_ORDER_APPROVE = "purchase_order.approve"  # four eyes above the threshold
    PURCHASE_ORDER_SEND = "purchase_order.send"
    PURCHASE_ORDER_CONFIRM = "purchase_order.confirm"
    PURCHASE_ORDER_RECEIVE = "purchase_order.receive"
    PURCHASE_ORDER_CANCEL = "purchase_order.cancel"
    VENDOR_INVOICE_RECORD = "purchase_order.vendor_invoice_record"
    # provisioning into vendors' applications (SPEC 8.4, issue 17)
    PROVISIONING_READ = "provisioning.read"
    PROVISIONING_CONFIGURE = "provisioning.configure"
    DELIVERY_READ = "provisioning.delivery_read"
    DELIVERY_REDELIVER = "provisioning.redeliver"
    PROVISIONING_RECONCILE = "provisioning.reconcile"
    # the audit log, dashboards
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"  # check the log's hash chain
    COUNCIL_DASHBOARD = "council.dashboard"
    ORGANISATION_DASHBOARD = "organisation.dashboard"


class Reach(enum.StrEnum):
    """Which objects a role's rule covers."""

    ANY = "any"
    OWN_ORGANISATION = "own_organisation"
    OWN_VENDOR = "own_vendor"
    SELF = "self"


A = Action
ANY, OWN_ORG, OWN_VENDOR, SELF = Reach.ANY, Reach.OWN_ORGANISATION, Reach.OWN_VENDOR, Reach.SELF

#: What anyone may do, signed in or not.
PUBLIC: frozenset[Action] = frozenset({A.ORGANISATION_APPLY})

#: What only system actors do (no role has a rule for it): jobs' own work.
SYSTEM_ONLY: frozenset[Action] = frozenset({A.JOB_RUN})

#: What every signed-in person may do to their own account.
_EVERY_PERSON: dict[Action, Reach] = {
    A.USER_PROFILE_UPDATE: SELF,
    A.USER_PASSWORD_CHANGE: SELF,
    A.USER_SECOND_FACTOR_MANAGE: SELF,
    A.SESSION_READ: SELF,
    A.SESSION_REVOKE: SELF,
    A.SEAT_READ_OWN: SELF,  # "My software" (council staff hold none)
    A.NOTIFICATION_READ: SELF,
    A.SUPPLIER_READ: ANY,  # the supplier directory
}

#: Council finance reads what a council admin reads but people, tokens, settings, the log.
_COUNCIL_READS: dict[Action, Reach] = {
    A.COUNCIL_DASHBOARD: ANY,
    A.ORGANISATION_READ: ANY,
    A.VENDOR_READ: ANY,
    A.CATALOGUE_READ: ANY,
    A.POOL_READ: ANY,
    A.SUBSCRIPTION_READ: ANY,
    A.USAGE_READ: ANY,
    A.INVOICE_READ: ANY,
    A.EXPORT_READ: ANY,
    A.JOB_READ: ANY,
    A.AUDIT_VERIFY: ANY,
    A.VENDOR_DOCUMENT_READ: ANY,
    A.VENDOR_SEATS_READ: ANY,
    A.VENDOR_USAGE_HEALTH_READ: ANY,
    A.DEMAND_READ: ANY,
    A.PRODUCT_REQUEST_READ: ANY,
    A.PURCHASE_ORDER_READ: ANY,
}

#: Handling invoices and money: council finance and council admins.
_FINANCE_WORK: dict[Action, Reach] = {
    A.INVOICE_RUN: ANY,
    A.INVOICE_DRAFT: ANY,
    A.INVOICE_FINALIZE: ANY,
    A.INVOICE_VOID: ANY,
    A.INVOICE_MARK_UNCOLLECTIBLE: ANY,
    A.CREDIT_NOTE_CREATE: ANY,
    A.PAYMENT_RECORD: ANY,
    A.PAYMENT_IMPORT_BANK: ANY,
    A.PAYMENT_RETRY: ANY,
    A.PURCHASE_ORDER_APPROVE: ANY,  # four eyes: two different people above the threshold
    A.VENDOR_INVOICE_RECORD: ANY,
}

RULES: Mapping[Role, Mapping[Action, Reach]] = {
    Role.COUNCIL_ADMIN: {
        **_EVERY_PERSON,
        **_COUNCIL_READS,
        **_FINANCE_WORK,
        A.ORGANISATION_CREATE: ANY,
        A.ORGANISATION_UPDATE: ANY,
        A.ORGANISATION_TRANSITION: ANY,
        A.USER_READ: ANY,
        A.USER_CREATE: ANY,
        A.USER_INVITE: ANY,
        A.USER_INVITATION_REVOKE: ANY,
        A.USER_CHANGE_ROLE: ANY,
        A.USER_SET_ACTIVE: ANY,
        A.USER_PROFILE_UPDATE: ANY,
        A.USER_SECOND_FACTOR_RESET: ANY,
        A.SESSION_READ: ANY,
        A.SESSION_REVOKE: ANY,
        A.JOB_MANAGE: ANY,
        A.VENDOR_CREATE: ANY,
        A.VENDOR_UPDATE: ANY,
        A.CATALOGUE_PRODUCT_CREATE: ANY,
        A.CATALOGUE_PRODUCT_UPDATE: ANY,
        A.CATALOGUE_METER_CREATE: ANY,
        A.POOL_CREATE: ANY,
        A.POOL_UPDATE: ANY,
        A.PRICE_CREATE: ANY,
        A.SUBSCRIPTION_CREATE: ANY,
        A.SUBSCRIPTION_BACKDATE: ANY,
        A.SUBSCRIPTION_RESIZE: ANY,
        A.SUBSCRIPTION_CANCEL: ANY,
        A.SUBSCRIPTION_WAITLIST_FILL: ANY,
        A.SEAT_ASSIGN: ANY,
        A.SEAT_RELEASE: ANY,
        A.SEAT_REQUEST_DECIDE: ANY,
        A.SEAT_IDLE_DECIDE: ANY,
        A.USAGE_REPORT: ANY,
        A.PAYMENT_METHOD_MANAGE: ANY,
        A.SETTINGS_READ: ANY,
        A.SETTINGS_UPDATE: ANY,
        A.TOKEN_READ: ANY,
        A.TOKEN_CREATE: ANY,
        A.TOKEN_REVOKE: ANY,
        A.SCIM_TOKEN_READ: ANY,
        A.SCIM_TOKEN_CREATE: ANY,
        A.SCIM_TOKEN_REVOKE: ANY,
        A.SCIM_PROVISION: ANY,
        A.SSO_READ: ANY,
        A.SSO_CONFIGURE: ANY,
        A.SSO_DOMAIN_VERIFY: ANY,
        A.SSO_PROVISION: ANY,
        A.AUDIT_READ: ANY,
        A.VENDOR_PROFILE_UPDATE: ANY,
        A.VENDOR_SERVICE_STATUS_SET: ANY,
        A.VENDOR_INCIDENT_MANAGE: ANY,
        A.VENDOR_DOCUMENT_MANAGE: ANY,
        A.PRODUCT_REQUEST_DECIDE: ANY,
        A.PURCHASE_ORDER_DRAFT: ANY,
        A.PURCHASE_ORDER_SEND: ANY,
        A.PURCHASE_ORDER_CONFIRM: ANY,
        A.PURCHASE_ORDER_RECEIVE: ANY,
        A.PURCHASE_ORDER_CANCEL: ANY,
        A.PROVISIONING_READ: ANY,
        A.PROVISIONING_CONFIGURE: ANY,
        A.DELIVERY_READ: ANY,
        A.DELIVERY_REDELIVER: ANY,
        A.PROVISIONING_RECONCILE: ANY,
    },
    Role.FINANCE: {
        **_EVERY_PERSON,
        **_COUNCIL_READS,
        **_FINANCE_WORK,
    },
    Role.ORG_ADMIN: {
        **_EVERY_PERSON,
        A.ORGANISATION_DASHBOARD: OWN_ORG,
        A.ORGANISATION_READ: OWN_ORG,
        A.ORGANISATION_UPDATE: OWN_ORG,
        A.USER_READ: OWN_ORG,
        A.USER_CREATE: OWN_ORG,
        A.USER_INVITE: OWN_ORG,
        A.USER_INVITATION_REVOKE: OWN_ORG,
        A.USER_CHANGE_ROLE: OWN_ORG,
        A.USER_SET_ACTIVE: OWN_ORG,
        A.CATALOGUE_READ: ANY,
        A.SUBSCRIPTION_READ: OWN_ORG,
        A.SUBSCRIPTION_CREATE: OWN_ORG,
        A.SUBSCRIPTION_RESIZE: OWN_ORG,
        A.SUBSCRIPTION_CANCEL: OWN_ORG,
        A.SUBSCRIPTION_WAITLIST_FILL: OWN_ORG,
        A.SEAT_ASSIGN: OWN_ORG,
        A.SEAT_RELEASE: OWN_ORG,
        A.SEAT_REQUEST_DECIDE: OWN_ORG,
        A.SEAT_IDLE_DECIDE: OWN_ORG,
        A.USAGE_READ: OWN_ORG,
        A.INVOICE_READ: OWN_ORG,
        A.PAYMENT_METHOD_MANAGE: OWN_ORG,
        A.PAYMENT_RETRY: OWN_ORG,
        A.TOKEN_READ: OWN_ORG,
        A.TOKEN_CREATE: OWN_ORG,
        A.TOKEN_REVOKE: OWN_ORG,
        A.SCIM_TOKEN_READ: OWN_ORG,
        A.SCIM_TOKEN_CREATE: OWN_ORG,
        A.SCIM_TOKEN_REVOKE: OWN_ORG,
        A.SCIM_PROVISION: OWN_ORG,
        A.SSO_READ: OWN_ORG,
        A.SSO_CONFIGURE: OWN_ORG,
        A.SSO_TEST: OWN_ORG,
        A.SSO_PROVISION: OWN_ORG,
        A.AUDIT_READ: OWN_ORG,
        A.PRODUCT_REQUEST_CREATE: OWN_ORG,
        A.PRODUCT_REQUEST_READ: OWN_ORG,
    },
    Role.MEMBER: {
        **_EVERY_PERSON,
        A.CATALOGUE_READ: ANY,
        A.SEAT_REQUEST: SELF,
        A.PRODUCT_REQUEST_CREATE: OWN_ORG,
        A.PRODUCT_REQUEST_READ: OWN_ORG,
    },
    Role.VENDOR_ADMIN: {
        **_EVERY_PERSON,
        A.VENDOR_READ: OWN_VENDOR,
        A.CATALOGUE_READ: ANY,
        A.USAGE_REPORT: OWN_VENDOR,
        A.ENTITLEMENT_CHECK: OWN_VENDOR,
        A.VENDOR_PROFILE_UPDATE: OWN_VENDOR,
        A.VENDOR_SERVICE_STATUS_SET: OWN_VENDOR,
        A.VENDOR_INCIDENT_MANAGE: OWN_VENDOR,
        A.VENDOR_DOCUMENT_READ: OWN_VENDOR,
        A.VENDOR_SEATS_READ: OWN_VENDOR,
        A.VENDOR_USAGE_HEALTH_READ: OWN_VENDOR,
        A.TOKEN_READ: OWN_VENDOR,
        A.TOKEN_CREATE: OWN_VENDOR,
        A.TOKEN_REVOKE: OWN_VENDOR,
        A.PROVISIONING_READ: OWN_VENDOR,
        A.PROVISIONING_CONFIGURE: OWN_VENDOR,
        A.DELIVERY_READ: OWN_VENDOR,
        A.DELIVERY_REDELIVER: OWN_VENDOR,
        A.PROVISIONING_RECONCILE: OWN_VENDOR,
    },
}

#: What a token of each kind is for, whatever its role would allow a person.
KIND_LIMITS: Mapping[ActorKind, frozenset[Action]] = {
    ActorKind.SCIM_TOKEN: frozenset(
        {
            A.SCIM_PROVISION,
            A.SSO_PROVISION,
            A.USER_CREATE,
            A.USER_INVITE,
            A.USER_SET_ACTIVE,
            A.SEAT_ASSIGN,
            A.SEAT_RELEASE,
        }
    ),
}


def _action(action: Action | str) -> Action | None:
    if isinstance(action, Action):
        return action
    try:
        return Action(action)
    except ValueError:
        return None


def reach_of(actor: Actor, action: Action | str) -> Reach | None:
    """The reach of ``actor``'s rule for ``action``; None when it has none (refused).

    A council-wide system actor reaches everything; one limited to an
    organisation reaches that organisation's objects (``OWN_ORGANISATION``).
    """
    known = _action(action)
    if known is None:
        return None
    if actor.kind == ActorKind.SYSTEM:
        return ANY if actor.organisation_id is None else OWN_ORG
    if known in PUBLIC:
        return ANY
    if actor.kind == ActorKind.ANONYMOUS or actor.role is None:
        return None
    limit = KIND_LIMITS.get(actor.kind)
    if limit is not None and known not in limit:
        return None
    return RULES.get(actor.role, {}).get(known)


def may(actor: Actor, action: Action | str) -> bool:
    """Whether ``actor`` may do ``action`` to some object (a view's or route's gate)."""
    return reach_of(actor, action) is not None


def allowed(
    actor: Actor,
    action: Action | str,
    *,
    organisation_id: int | None = None,
    vendor_id: int | None = None,
    user_id: int | None = None,
) -> bool:
    """Whether ``actor`` may do ``action`` to an object of ``organisation_id``, ``vendor_id``
    and ``user_id`` (give those the object has; an object of no organisation, a
    council-wide one, is reached only by ``ANY``)."""
    reach = reach_of(actor, action)
    if reach is None:
        return False
    if reach == ANY:
        return True
    if reach == OWN_ORG:
        return actor.organisation_id is not None and organisation_id == actor.organisation_id
    if reach == OWN_VENDOR:
        return actor.vendor_id is not None and vendor_id == actor.vendor_id
    if reach == SELF:
        return actor.user_id is not None and user_id == actor.user_id
    return False  # pragma: no cover (every reach is answered above)


def elsewhere(
    actor: Actor, *, organisation_id: int | None = None, vendor_id: int | None = None
) -> bool:
    """Whether the object belongs to another organisation or vendor than the actor's own."""
    if actor.organisation_id is not None and organisation_id is not None:
        return organisation_id != actor.organisation_id
    if actor.vendor_id is not None and vendor_id is not None:
        return vendor_id != actor.vendor_id
    return False


def require(
    actor: Actor,
    action: Action | str,
    *,
    organisation_id: int | None = None,
    vendor_id: int | None = None,
    user_id: int | None = None,
    message: str | None = None,
) -> None:
    """Refuse unless :func:`allowed`: :class:`NotFound` for another organisation's (or
    vendor's) object, :class:`PermissionDenied` otherwise."""
    if allowed(
        actor, action, organisation_id=organisation_id, vendor_id=vendor_id, user_id=user_id
    ):
        return
    if actor.kind != ActorKind.ANONYMOUS and elsewhere(
        actor, organisation_id=organisation_id, vendor_id=vendor_id
    ):
        raise NotFound(_l("No such thing here."))
    if actor.kind == ActorKind.ANONYMOUS:
        raise PermissionDenied(_l("Sign in to do this."))
    raise PermissionDenied(message or _l("You may not do this."))


def require_may(actor: Actor, action: Action | str, *, message: str | None = None) -> None:
    """Refuse unless ``actor`` may do ``action`` to some object: for work that follows
    from another allowed change (a waitlist filled after a cancellation) and gates."""
    if may(actor, action):
        return
    if actor.kind == ActorKind.ANONYMOUS:
        raise PermissionDenied(_l("Sign in to do this."))
    raise PermissionDenied(message or _l("You may not do this."))


def roles_allowed(action: Action | str) -> frozenset[Role]:
    """The roles with a rule for ``action`` (views guarded by an action accept these)."""
    known = _action(action)
    return frozenset(role for role, rules in RULES.items() if known in rules)
