"""Authorization fails closed (SPEC invariant 10): the policy table, and every service.

The first tests ask :mod:`portal.kernel.policy` itself. The last ones find every
public function of the portal's services that takes an ``actor`` (by introspection)
and call each with an anonymous actor, an actor of a role nobody knows and a person
without a role: each must refuse (:class:`PermissionDenied` or :class:`NotFound`)
before it writes anything. A new entry point must be added to :data:`ENTRY_POINTS`
(with arguments that would otherwise get past the check) or to :data:`NOT_OPERATIONS`
(with the reason it checks nothing): the discovery test fails until it is.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

import portal
from portal.db import bind_scope, db
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind, Role
from portal.kernel.errors import NotFound, PermissionDenied
from portal.kernel.policy import RULES, Action, Reach
from portal.kernel.scope import Scope

# ------------------------------------------------------------------ the table


def person(role: Role | str | None, organisation_id: int | None = None, **kw: Any) -> Actor:
    return Actor(
        label="someone",
        kind=ActorKind.PERSON,
        user_id=kw.pop("user_id", 1),
        role=role,  # type: ignore[arg-type]
        organisation_id=organisation_id,
        **kw,
    )


def test_every_role_has_rules_and_every_action_someone():
    assert set(RULES) == set(Role)
    granted = {action for rules in RULES.values() for action in rules} | policy.PUBLIC
    nobody = set(Action) - granted - policy.SYSTEM_ONLY
    assert not nobody, f"actions no role may do: {sorted(nobody)}"
    assert not granted & policy.SYSTEM_ONLY  # the system's own work is no role's


def test_jobs_work_only_as_the_system():
    assert policy.allowed(Actor.system("job:x"), Action.JOB_RUN)
    assert not policy.allowed(Actor.system("sso", organisation_id=1), Action.JOB_RUN)
    for role in Role:
        assert not policy.allowed(person(role, 1), Action.JOB_RUN, organisation_id=1)


@pytest.mark.parametrize("action", list(Action))
def test_anonymous_may_do_only_what_is_public(action):
    anonymous = Actor.anonymous()
    assert policy.allowed(anonymous, action, organisation_id=1) == (action in policy.PUBLIC)
    assert Actor(label="bare").kind == ActorKind.ANONYMOUS  # the bare constructor too
    if action not in policy.PUBLIC:
        with pytest.raises(PermissionDenied):
            policy.require(anonymous, action, organisation_id=1)


@pytest.mark.parametrize("action", sorted(set(Action) - policy.PUBLIC))
def test_unknown_and_missing_roles_are_refused(action):
    for actor in (person("pirate", 1), person(None, 1), person("", 1)):
        assert actor.role is None
        assert not policy.allowed(actor, action, organisation_id=1, user_id=1)
        with pytest.raises(PermissionDenied):
            policy.require(actor, action, organisation_id=1, user_id=1)


def test_unknown_actions_are_refused_even_to_the_system():
    for actor in (Actor.system(), person(Role.COUNCIL_ADMIN)):
        assert not policy.allowed(actor, "organisation.launch_missiles")
        with pytest.raises(PermissionDenied):
            policy.require(actor, "organisation.launch_missiles")


def test_reaches():
    admin = person(Role.COUNCIL_ADMIN)
    assert policy.allowed(admin, Action.SEAT_ASSIGN, organisation_id=5)
    assert policy.allowed(admin, Action.SEAT_ASSIGN)  # council-wide
    org_admin = person(Role.ORG_ADMIN, 5)
    assert policy.allowed(org_admin, Action.SEAT_ASSIGN, organisation_id=5)
    assert not policy.allowed(org_admin, Action.SEAT_ASSIGN)  # a council-wide object
    assert not policy.allowed(org_admin, Action.SEAT_ASSIGN, organisation_id=6)
    member = person(Role.MEMBER, 5, user_id=9)
    assert policy.allowed(member, Action.SEAT_REQUEST, organisation_id=5, user_id=9)
    assert not policy.allowed(member, Action.SEAT_REQUEST, organisation_id=5, user_id=10)
    vendor = Actor.api_token("t", role=Role.VENDOR_ADMIN, vendor_id=3)
    assert policy.allowed(vendor, Action.USAGE_REPORT, vendor_id=3)
    assert not policy.allowed(vendor, Action.USAGE_REPORT, vendor_id=4)
    assert not policy.allowed(vendor, Action.USAGE_REPORT)  # every vendor's products
    assert not policy.allowed(vendor, Action.INVOICE_READ, organisation_id=5)


def test_another_organisations_object_is_not_found():
    org_admin = person(Role.ORG_ADMIN, 5)
    with pytest.raises(NotFound):
        policy.require(org_admin, Action.SUBSCRIPTION_CANCEL, organisation_id=6)
    member = person(Role.MEMBER, 5)  # not theirs to manage, in their own organisation
    with pytest.raises(PermissionDenied):
        policy.require(member, Action.SUBSCRIPTION_CANCEL, organisation_id=5)
    with pytest.raises(NotFound):  # nor in another: there it does not exist
        policy.require(member, Action.SUBSCRIPTION_CANCEL, organisation_id=6)
    vendor = Actor.api_token("t", role=Role.VENDOR_ADMIN, vendor_id=3)
    with pytest.raises(NotFound):
        policy.require(vendor, Action.VENDOR_READ, vendor_id=4)


def test_system_actors_act_within_their_scope():
    council_wide = Actor.system("job")
    assert all(policy.allowed(council_wide, a, organisation_id=7) for a in Action)
    one = Actor.system("sso", organisation_id=7)
    assert policy.allowed(one, Action.USER_CREATE, organisation_id=7)
    assert not policy.allowed(one, Action.USER_CREATE, organisation_id=8)
    assert not policy.allowed(one, Action.VENDOR_CREATE)
    with pytest.raises(NotFound):
        policy.require(one, Action.USER_CREATE, organisation_id=8)


def test_tokens_do_what_their_kind_is_for():
    scim = Actor.scim_token("SCIM x", organisation_id=7)
    assert policy.allowed(scim, Action.SCIM_PROVISION, organisation_id=7)
    assert policy.allowed(scim, Action.SEAT_ASSIGN, organisation_id=7)
    # An org admin may; their organisation's SCIM client may not.
    assert policy.allowed(person(Role.ORG_ADMIN, 7), Action.TOKEN_CREATE, organisation_id=7)
    assert not policy.allowed(scim, Action.TOKEN_CREATE, organisation_id=7)
    assert not policy.allowed(scim, Action.INVOICE_READ, organisation_id=7)


def test_the_spec_roles_in_a_few_lines():
    """SPEC section 2 and 8.1, as the table says it."""
    finance = person(Role.FINANCE)
    assert policy.allowed(finance, Action.INVOICE_FINALIZE, organisation_id=1)
    assert policy.allowed(finance, Action.ORGANISATION_READ, organisation_id=1)  # reads all
    assert not policy.allowed(finance, Action.ORGANISATION_UPDATE, organisation_id=1)
    assert not policy.allowed(finance, Action.CATALOGUE_PRODUCT_CREATE)
    org_admin = person(Role.ORG_ADMIN, 1)
    assert policy.allowed(org_admin, Action.INVOICE_READ, organisation_id=1)
    assert not policy.allowed(org_admin, Action.INVOICE_FINALIZE, organisation_id=1)
    member = person(Role.MEMBER, 1)
    assert not policy.allowed(member, Action.USER_READ, organisation_id=1)
    vendor_admin = person(Role.VENDOR_ADMIN, vendor_id=2)
    assert not any(
        policy.allowed(vendor_admin, a, organisation_id=1)
        for a in Action
        if a.value.startswith(("invoice.", "credit_note.", "payment."))
    )
    assert {r for r, rules in RULES.items() if rules.get(Action.SETTINGS_UPDATE) == Reach.ANY} == {
        Role.COUNCIL_ADMIN
    }


# ------------------------------------------------------------------ every service entry point


class World:
    """What the entry points are called on: one organisation's rows, made by the system.

    Objects that the refusal must come before are passed unsaved (only their
    organisation), so a service that touched them before checking would fail loudly.
    """

    def __init__(
        self, org, member, product, subscription_id: int, seat_id: int, delivery_id: int
    ) -> None:
        from portal.catalogue.models import LicencePool, Product, Vendor
        from portal.identity.models import User
        from portal.seats.models import Subscription
        from portal.tenancy.models import Organisation

        s = db.session
        self.org = s.get(Organisation, org.id)
        self.member = s.get(User, member.id)
        self.product = s.get(Product, product.id)
        self.vendor = s.get(Vendor, self.product.vendor_id)
        self.pool = s.scalar(sa.select(LicencePool).where(LicencePool.product_id == product.id))
        self.subscription = s.get(Subscription, subscription_id)
        self.seat_id = seat_id
        self.delivery_id = delivery_id  # the member's seat, due to go to the vendor's webhook

    @property
    def seat(self):
        from portal.seats.models import SeatAssignment

        return db.session.get(SeatAssignment, self.seat_id)

    def unsaved(self, model_path: str, **fields: Any) -> Any:
        module, _, name = model_path.rpartition(".")
        model = getattr(importlib.import_module(module), name)
        return model(organisation_id=self.org.id, **fields)

    def unsaved_of_vendor(self, model_path: str, **fields: Any) -> Any:
        """A council-wide row of the world's vendor, unsaved (only its vendor's id)."""
        module, _, name = model_path.rpartition(".")
        model = getattr(importlib.import_module(module), name)
        return model(vendor_id=self.vendor.id, **fields)


Args = Callable[[World], dict[str, Any]]
TODAY = dt.date(2026, 9, 15)
NOW = dt.datetime(2026, 9, 15, 12, tzinfo=dt.UTC)

#: Every service entry point with arguments that would get past anything but the check.
ENTRY_POINTS: dict[str, Args] = {
    # api
    "portal.api.services.token_create": lambda w: {
        "scope": "organisation",
        "organisation": w.org,
        "name": "x",
    },
    "portal.api.services.token_revoke": lambda w: {
        "token": w.unsaved("portal.api.models.ApiToken", scope="organisation")
    },
    # audit
    "portal.audit.services.audit_chain_check": lambda w: {},
    "portal.audit.services.may_verify_chain": lambda w: {},
    # billing
    "portal.billing.bank_import.bank_statement_upload": lambda w: {
        "data": b"date,amount,currency,reference\n"
    },
    "portal.billing.bank_import.bank_statement_import": lambda w: {
        "text": "date,amount,currency,reference\n"
    },
    "portal.billing.documents.invoice_document_job": lambda w: {"invoice_id": 1},
    "portal.billing.drafting.drafts_write": lambda w: {"organisations": [], "inputs": None},
    "portal.billing.drafting.invoice_draft_refresh": lambda w: {
        "organisation": w.org,
        "period": "2026-08",
    },
    "portal.billing.drafting.draft_recompute": lambda w: {"invoice": _invoice(w)},
    "portal.billing.jobs.invoice_run_create": lambda w: {"period": "2026-08"},
    "portal.billing.jobs.invoice_run_execute": lambda w: {"run_id": 1},
    "portal.billing.jobs.invoice_run": lambda w: {"period": "2026-08"},
    "portal.billing.jobs.invoice_run_job": lambda w: {"run_id": 1},
    "portal.billing.reminders.overdue_reminders_send": lambda w: {"now": NOW},
    "portal.billing.reminders.overdue_reminders_job": lambda w: {},
    "portal.billing.lifecycle.invoice_finalize": lambda w: {"invoice": _invoice(w)},
    "portal.billing.lifecycle.invoice_void": lambda w: {"invoice": _invoice(w), "reason": "x"},
    "portal.billing.lifecycle.invoice_mark_uncollectible": lambda w: {
        "invoice": _invoice(w),
        "reason": "x",
    },
    "portal.billing.lifecycle.credit_note_create": lambda w: {
        "invoice": _invoice(w),
        "amount": 1,
        "reason": "x",
    },
    "portal.billing.lifecycle.payment_record": lambda w: {
        "invoice": _invoice(w),
        "amount": 1,
        "method": "stripe",
        "received_on": TODAY,
    },
    "portal.billing.operations.invoice_run_start": lambda w: {"period": "2026-08"},
    "portal.billing.operations.drafts_finalize": lambda w: {"period": "2026-08"},
    # catalogue
    "portal.catalogue.services.vendor_create": lambda w: {"data": {}},
    "portal.catalogue.services.vendor_update": lambda w: {"vendor": w.vendor, "data": {}},
    "portal.catalogue.services.product_create": lambda w: {"data": {}},
    "portal.catalogue.services.product_update": lambda w: {"product": w.product, "data": {}},
    "portal.catalogue.services.meter_create": lambda w: {"product": w.product, "data": {}},
    "portal.catalogue.services.pool_create": lambda w: {"data": {}},
    "portal.catalogue.services.pool_update": lambda w: {"pool": w.pool, "data": {}},
    "portal.catalogue.services.price_create": lambda w: {"data": {}},
    # identity
    "portal.identity.accounts.user_create": lambda w: {
        "email": "new@org-1.example",
        "role": "member",
        "organisation": w.org,
    },
    "portal.identity.accounts.require_people_manager": lambda w: {
        "action": Action.USER_CREATE,
        "organisation_id": w.org.id,
    },
    "portal.identity.accounts.user_change_role": lambda w: {"user": w.member, "role": "org_admin"},
    "portal.identity.accounts.user_set_active": lambda w: {"user": w.member, "active": False},
    "portal.identity.accounts.profile_update": lambda w: {"user": w.member, "name": "x"},
    "portal.identity.accounts.language_choose": lambda w: {"user": w.member, "language": "ru"},
    "portal.identity.factors.totp_begin": lambda w: {"user": w.member, "issuer": "x"},
    "portal.identity.factors.totp_pending": lambda w: {"user": w.member, "issuer": "x"},
    "portal.identity.factors.totp_confirm": lambda w: {"user": w.member, "code": "000000"},
    "portal.identity.factors.totp_remove": lambda w: {"user": w.member, "code": "000000"},
    "portal.identity.factors.recovery_codes_generate": lambda w: {"user": w.member},
    "portal.identity.factors.factors_reset": lambda w: {"user": w.member},
    "portal.identity.factors.second_factor_requirement_set": lambda w: {
        "organisation": w.org,
        "required": True,
    },
    "portal.identity.invitations.invitation_create": lambda w: {
        "email": "invited@org-1.example",
        "role": "member",
        "organisation": w.org,
    },
    "portal.identity.invitations.invitation_revoke": lambda w: {
        "invitation": w.unsaved("portal.identity.models.Invitation")
    },
    "portal.identity.invitations.organisation_change_status": lambda w: {
        "organisation": w.org,
        "to_status": "suspended",
    },
    "portal.identity.passkeys.passkeys_list": lambda w: {"user": w.member},
    "portal.identity.passkeys.passkey_of": lambda w: {"user": w.member, "passkey_id": 1},
    "portal.identity.passkeys.registration_options": lambda w: {"user": w.member},
    "portal.identity.passkeys.passkey_register": lambda w: {"user": w.member, "credential": "{}"},
    "portal.identity.passkeys.passkey_rename": lambda w: {
        "user": w.member,
        "passkey_id": 1,
        "name": "x",
    },
    "portal.identity.passkeys.passkey_remove": lambda w: {"user": w.member, "passkey_id": 1},
    "portal.identity.passwords.password_change": lambda w: {
        "user": w.member,
        "current": "x",
        "new": "a much longer new password",
        "keep_token": None,
    },
    "portal.identity.sessions.sessions_active": lambda w: {"user": w.member},
    "portal.identity.sessions.session_of": lambda w: {"user": w.member, "session_id": 1},
    "portal.identity.sessions.session_revoke_one": lambda w: {"user": w.member, "session_id": 1},
    "portal.identity.sessions.sessions_revoke_all": lambda w: {"user": w.member},
    # jobs
    "portal.jobs.services.job_retry": lambda w: {"job_id": 1},
    "portal.jobs.services.job_cancel": lambda w: {"job_id": 1},
    "portal.kernel.scope.scope_of": lambda w: {},
    # mail
    "portal.mail.services.mail_resend": lambda w: {
        "message": w.unsaved("portal.mail.models.MailMessage", related_type="invitation")
    },
    "portal.mail.services.mail_send_job": lambda w: {"message_id": 1},
    # metering
    "portal.metering.prompts.idle_seat_prompts_send": lambda w: {"now": NOW},
    "portal.metering.prompts.idle_seat_prompts_job": lambda w: {},
    "portal.metering.partitions.usage_partitions_ensure": lambda w: {"now": NOW},
    "portal.metering.partitions.usage_partitions_job": lambda w: {},
    "portal.metering.ingest.usage_ingest": lambda w: {
        "body": b'{"events": []}',
        "vendor_id": None,
        "max_age_days": 35,
    },
    "portal.metering.services.usage_ingest_csv": lambda w: {
        "text": "idempotency_key,organisation,product,meter,quantity,occurred_at\n",
        "vendor_id": None,
        "max_age_days": 35,
    },
    "portal.metering.services.idle_seat_keep": lambda w: {"seat": w.seat},
    "portal.metering.services.idle_seat_release": lambda w: {"seat": w.seat},
    # payments
    "portal.payments.accounts.account_ensure": lambda w: {"organisation": w.org, "gateway": None},
    "portal.payments.accounts.payment_method_save": lambda w: {
        "organisation": w.org,
        "gateway": None,
        "method": None,
    },
    "portal.payments.accounts.stripe_test_card_add": lambda w: {
        "organisation": w.org,
        "gateway": None,
        "test_method": "pm_card_visa",
    },
    "portal.payments.accounts.checkout_start": lambda w: {
        "organisation": w.org,
        "gateway": None,
        "success_url": "https://x.example/ok",
        "cancel_url": "https://x.example/no",
    },
    "portal.payments.accounts.checkout_finish": lambda w: {
        "organisation": w.org,
        "gateway": None,
        "checkout_session_id": "cs_test",
    },
    "portal.payments.collection.collection_retry_now": lambda w: {
        "organisation": w.org,
        "invoice_id": 1,
    },
    "portal.payments.jobs.payments_collect_job": lambda w: {},
    "portal.payments.webhooks.webhook_apply_job": lambda w: {"event_id": "evt_1"},
    # scim
    "portal.scim.services.token_create": lambda w: {"organisation": w.org, "name": "x"},
    "portal.scim.services.token_revoke": lambda w: {
        "token": w.unsaved("portal.scim.models.ScimToken")
    },
    "portal.scim.services.scim_user_create": lambda w: {"organisation": w.org, "fields": None},
    "portal.scim.services.scim_user_update": lambda w: {
        "organisation": w.org,
        "user": w.member,
        "fields": None,
    },
    "portal.scim.services.scim_user_delete": lambda w: {"user": w.member},
    "portal.scim.services.scim_group_create": lambda w: {
        "organisation": w.org,
        "display_name": "g",
        "external_id": None,
        "member_ids": [],
    },
    "portal.scim.services.scim_group_update": lambda w: {
        "group": _group(w),
        "display_name": "g",
        "external_id": None,
        "member_ids": [],
    },
    "portal.scim.services.scim_group_change_members": lambda w: {
        "group": _group(w),
        "add": [],
        "remove": [],
    },
    "portal.scim.services.group_set_members": lambda w: {"group": _group(w), "users": []},
    "portal.scim.services.scim_group_delete": lambda w: {"group": _group(w)},
    "portal.scim.services.mapping_create": lambda w: {
        "organisation": w.org,
        "group": _group(w),
        "product": w.product,
    },
    "portal.scim.services.mapping_delete": lambda w: {
        "mapping": w.unsaved("portal.scim.models.ScimGroupProduct")
    },
    "portal.scim.services.mappings_sync": lambda w: {"organisation": w.org},
    # seats
    "portal.seats.assignments.seat_assign": lambda w: {
        "subscription": w.subscription,
        "user_email": "someone-new@org-1.example",
    },
    "portal.seats.assignments.seat_assign_many": lambda w: {
        "subscription": w.subscription,
        "emails": ["someone-new@org-1.example"],
    },
    "portal.seats.assignments.seat_release": lambda w: {
        "subscription": w.subscription,
        "user_email": w.member.email,
    },
    "portal.seats.requests.seat_request_create": lambda w: {
        "user": w.member,
        "product": w.product,
    },
    "portal.seats.requests.seat_request_decide": lambda w: {
        "request": w.unsaved("portal.seats.models.SeatRequest"),
        "approve": True,
    },
    "portal.seats.subscriptions.subscription_create": lambda w: {
        "organisation": w.org,
        "product": w.product,
        "quantity": 1,
    },
    "portal.seats.subscriptions.subscription_resize": lambda w: {
        "subscription": w.subscription,
        "quantity": 3,
    },
    "portal.seats.subscriptions.subscription_cancel": lambda w: {"subscription": w.subscription},
    "portal.seats.waitlist.waitlist_fill": lambda w: {"product": w.product},
    # notifications (issue 15)
    "portal.notifications.digest.daily_digest_job": lambda w: {},
    "portal.notifications.digest.digest_send": lambda w: {"day": TODAY},
    "portal.notifications.events.seat_holders_job": lambda w: {
        "vendor_id": w.vendor.id,
        "kind": "incident.opened",
        "key": "incident:1:opened",
        "params": {"vendor": "V", "title": "T", "impact": "major"},
    },
    "portal.notifications.retention.notifications_sweep": lambda w: {"now": NOW},
    "portal.notifications.retention.notifications_sweep_job": lambda w: {},
    "portal.notifications.selectors.notification_of": lambda w: {"notification_id": 1},
    "portal.notifications.selectors.notifications_page": lambda w: {},
    "portal.notifications.selectors.unread_count": lambda w: {},
    "portal.notifications.services.mark_read": lambda w: {"notification_id": 1},
    "portal.notifications.services.mark_all_read": lambda w: {},
    "portal.notifications.services.preferences_update": lambda w: {
        "user": w.member,
        "mail_incidents": False,
        "mail_standing": False,
        "mail_operations": False,
        "digest": False,
    },
    # procurement: renewal forecasts (issue 16)
    "portal.procurement.forecast.pool_forecast": lambda w: {"pool_id": w.pool.id},
    "portal.procurement.forecast.forecasts_list": lambda w: {},
    "portal.procurement.forecast_jobs.pool_reminders_send": lambda w: {},
    "portal.procurement.forecast_jobs.pool_reminders_job": lambda w: {},
    # procurement: product requests and demand
    "portal.procurement.demand.demand_board": lambda w: {},
    "portal.procurement.demand.waiting_request_groups": lambda w: {},
    "portal.procurement.demand.waiting_requests_of": lambda w: {"product_ids": [w.product.id]},
    "portal.procurement.demand.draft_from_demand": lambda w: {
        "product_id": w.product.id,
        "seats": 2,
        "unit_cost": 100,
        "currency": "EUR",
        "starts_on": "2026-10-01",
        "ends_on": "2027-09-30",
    },
    "portal.procurement.demand.product_request_create": lambda w: {
        "product_name": "A product nobody sells yet",
        "seats": 3,
        "vendor_id": w.vendor.id,
    },
    "portal.procurement.demand.product_request_get": lambda w: {"request_id": 1},
    "portal.procurement.demand.product_requests_list": lambda w: {},
    "portal.procurement.demand.product_requests_page": lambda w: {},
    "portal.procurement.demand.product_requests_query": lambda w: {},
    "portal.procurement.demand.product_request_answer": lambda w: {
        "request": _product_request(w),
        "state": "planned",
        "reply": "x",
    },
    "portal.procurement.demand.product_request_link": lambda w: {
        "request": _product_request(w),
        "product_id": w.product.id,
    },
    "portal.procurement.demand.product_request_merge": lambda w: {
        "request": _product_request(w),
        "into": 1,
    },
    # procurement: purchase orders
    "portal.procurement.purchase_orders.purchase_orders_list": lambda w: {},
    "portal.procurement.purchase_orders.purchase_order_get": lambda w: {"po_id": 1},
    "portal.procurement.purchase_orders.mismatches": lambda w: {},
    "portal.procurement.purchase_orders.draft_purchase_order": lambda w: {
        "vendor_id": w.vendor.id,
        "lines": [{"product_id": w.product.id, "seats": 2, "unit_cost": 100}],
        "currency": "EUR",
        "starts_on": "2026-10-01",
        "ends_on": "2027-09-30",
    },
    "portal.procurement.purchase_orders.update_draft": lambda w: {
        "po": _purchase_order(w, "draft"),
        "vendor_id": w.vendor.id,
        "lines": [{"product_id": w.product.id, "seats": 2, "unit_cost": 100}],
        "currency": "EUR",
        "starts_on": "2026-10-01",
        "ends_on": "2027-09-30",
    },
    "portal.procurement.purchase_orders.may_approve": lambda w: {"po": _purchase_order(w, "draft")},
    "portal.procurement.purchase_orders.approve": lambda w: {"po": _purchase_order(w, "draft")},
    "portal.procurement.purchase_orders.send": lambda w: {"po": _purchase_order(w, "approved")},
    "portal.procurement.purchase_orders.confirm": lambda w: {
        "po": _purchase_order(w, "sent"),
        "vendor_reference": "x",
    },
    "portal.procurement.purchase_orders.receive": lambda w: {"po": _purchase_order(w, "confirmed")},
    "portal.procurement.purchase_orders.cancel": lambda w: {
        "po": _purchase_order(w, "draft"),
        "reason": "x",
    },
    "portal.procurement.purchase_orders.vendor_invoice_record": lambda w: {
        "po": _purchase_order(w, "received"),
        "data": {"vendor_number": "INV-1", "issued_on": "2026-09-15", "lines": []},
    },
    # suppliers: the vendor portal's reads (issue 15)
    "portal.suppliers.vendor_portal.own_vendor": lambda w: {},
    "portal.suppliers.vendor_portal.incidents_of": lambda w: {"vendor": w.vendor},
    "portal.suppliers.vendor_portal.incident_of": lambda w: {"vendor": w.vendor, "incident_id": 1},
    "portal.suppliers.vendor_portal.products_seats": lambda w: {"vendor": w.vendor, "day": TODAY},
    "portal.suppliers.vendor_portal.usage_health": lambda w: {"vendor": w.vendor, "today": TODAY},
    # provisioning: vendors' settings, the delivery outbox and reconciliation
    "portal.provisioning.services.settings_of": lambda w: {"vendor": w.vendor},
    "portal.provisioning.services.settings_update": lambda w: {
        "vendor": w.vendor,
        "data": {"webhook_url": "https://hooks.x.example/portal", "on_release": "deactivate"},
    },
    "portal.provisioning.services.webhook_secret_rotate": lambda w: {"vendor": w.vendor},
    "portal.provisioning.services.redeliver": lambda w: {
        "delivery": w.unsaved(
            "portal.provisioning.models.Delivery", vendor_id=w.vendor.id, state="failed"
        )
    },
    "portal.provisioning.selectors.deliveries_page": lambda w: {"filters": _deliveries()},
    "portal.provisioning.selectors.deliveries_paged": lambda w: {
        "filters": _deliveries(),
        "page": 1,
    },
    "portal.provisioning.selectors.delivery_for": lambda w: {"delivery_id": w.delivery_id},
    "portal.provisioning.delivery.deliver_job": lambda w: {"vendor_id": w.vendor.id, "lease": "x"},
    "portal.provisioning.jobs.sweep_job": lambda w: {},
    "portal.seats.counts.fold_job": lambda w: {},
    "portal.seats.counts.counts_recount": lambda w: {"fix": True},
    "portal.provisioning.reconcile.connection_check": lambda w: {"vendor": w.vendor},
    "portal.provisioning.reconcile.scim_settings_of": lambda w: {"vendor": w.vendor},
    "portal.provisioning.reconcile.reconcile_vendor": lambda w: {"vendor": w.vendor, "fix": True},
    "portal.provisioning.reconcile.reconcile_all": lambda w: {},
    "portal.provisioning.reconcile.reconcile_job": lambda w: {},
    "portal.provisioning.reconcile.reconcile_request": lambda w: {"vendor": w.vendor, "fix": True},
    "portal.provisioning.reconcile.reconcile_run_job": lambda w: {"run_id": 1},
    "portal.provisioning.reconcile.latest_runs": lambda w: {},
    "portal.provisioning.reconcile.runs_of": lambda w: {"vendor": w.vendor},
    "portal.provisioning.reconcile.run_of": lambda w: {"vendor": w.vendor, "run_id": 1},
    "portal.provisioning.reconcile.findings_of": lambda w: {
        "run": w.unsaved_of_vendor("portal.provisioning.reconcile_models.ReconciliationRun")
    },
    # suppliers: status, incidents and profiles (issue 15)
    "portal.suppliers.services.set_service_status": lambda w: {
        "vendor": w.vendor,
        "status": "major_outage",
        "message": "x",
    },
    "portal.suppliers.services.set_status_page_url": lambda w: {
        "vendor": w.vendor,
        "url": "https://status.x.example",
    },
    "portal.suppliers.services.open_incident": lambda w: {
        "vendor": w.vendor,
        "title": "x",
        "impact": "major",
        "body": "x",
    },
    "portal.suppliers.services.add_incident_update": lambda w: {
        "incident": w.unsaved_of_vendor(
            "portal.suppliers.models.Incident", title="x", impact="major", state="investigating"
        ),
        "body": "x",
        "state": "resolved",
    },
    "portal.suppliers.services.update_profile": lambda w: {
        "vendor": w.vendor,
        "data": {"legal_name": "x"},
    },
    # suppliers: the status page poller
    "portal.suppliers.statuspage.poll_status_job": lambda w: {},
    "portal.suppliers.statuspage.poll_outside_transaction": lambda w: {"timeout": 0.1},
    "portal.suppliers.statuspage.poll_vendors": lambda w: {
        "vendors": [w.vendor],
        "timeout": 0.1,
        "retries": 0,
        "pause": 0,
    },
    "portal.suppliers.statuspage.apply_readings": lambda w: {"targets": [], "readings": []},
    "portal.suppliers.statuspage.apply_summary": lambda w: {
        "vendor": w.vendor,
        "summary": _summary(),
    },
    # suppliers: compliance documents
    "portal.suppliers.compliance.documents_of": lambda w: {"vendor": w.vendor},
    "portal.suppliers.compliance.document_of": lambda w: {"vendor": w.vendor, "document_id": 1},
    "portal.suppliers.compliance.document_upload": lambda w: {
        "vendor": w.vendor,
        "data": {},
        "content": b"%PDF-1.4\n",
        "filename": "x.pdf",
    },
    "portal.suppliers.compliance.document_delete": lambda w: {
        "document": w.unsaved_of_vendor(
            "portal.suppliers.compliance_models.ComplianceDocument", kind="iso27001", title="x"
        )
    },
    "portal.suppliers.compliance.compliance_expiry_check": lambda w: {"today": TODAY},
    "portal.suppliers.compliance.compliance_expiry_job": lambda w: {},
    # settings
    "portal.settings.services.settings_update": lambda w: {"data": {}},
    # single sign-on
    "portal.sso.services.connection_save": lambda w: {"organisation": w.org, "data": {}},
    "portal.sso.services.connection_may_test": lambda w: {"connection": _connection(w)},
    "portal.sso.services.connection_record_test": lambda w: {
        "connection": _connection(w),
        "ok": True,
        "message": "x",
    },
    "portal.sso.services.connection_delete": lambda w: {"connection": _connection(w)},
    "portal.sso.services.domain_claim": lambda w: {"organisation": w.org, "domain": "x.example"},
    "portal.sso.services.domain_verify": lambda w: {"claim": _claim(w)},
    "portal.sso.services.domain_remove": lambda w: {"claim": _claim(w)},
    "portal.sso.services.user_provision": lambda w: {
        "organisation": w.org,
        "email": "provisioned@org-1.example",
    },
    # tenancy
    "portal.tenancy.services.organisation_create": lambda w: {"data": {}},
    "portal.tenancy.services.organisation_update": lambda w: {
        "organisation": w.org,
        "data": {"billing_email": "new@org-1.example"},
    },
    "portal.tenancy.services.organisation_transition": lambda w: {
        "organisation": w.org,
        "to_status": "suspended",
    },
}

#: Functions that take an actor but are not operations anyone is refused, and why.
NOT_OPERATIONS: dict[str, str] = {
    "portal.audit.services.audit_record": "records who did what; its callers are checked",
    "portal.jobs.queue.enqueue": "records a job for a service that checked its actor",
    "portal.mail.services.mail_queue": "records mail for a service that checked its actor",
    "portal.notifications.services.notify": "tells people of a change a checked service made",
    "portal.notifications.services.notify_council_staff": "notify, to council staff",
    "portal.notifications.events.enqueue_seat_holders": "a receiver's job for a checked change",
    "portal.procurement.documents.purchase_order_mail_queue": (
        "queues the order's mail for send(), which checked its actor (as mail_queue)"
    ),
    "portal.suppliers.compliance.expiring_by_vendor": (
        "a read filtered by the actor's reach (documents of the vendors it may read: none "
        "for an actor who may read none), the pages' expiry warnings"
    ),
    "portal.tenancy.services.organisation_apply": "the public membership application",
}

#: Public actions: anyone may, so they are not expected to refuse.
PUBLIC_ENTRY_POINTS = {"portal.tenancy.services.organisation_apply": Action.ORGANISATION_APPLY}


def _invoice(w: World):
    return w.unsaved(
        "portal.billing.models.Invoice", period="2026-08", currency="EUR", status="draft"
    )


def _product_request(w: World):
    return w.unsaved("portal.procurement.models.ProductRequest", product_name="x", seats=1)


def _purchase_order(w: World, state: str):
    return w.unsaved_of_vendor(
        "portal.procurement.models.PurchaseOrder",
        state=state,
        currency="EUR",
        starts_on=dt.date(2026, 10, 1),
        ends_on=dt.date(2027, 9, 30),
    )


def _deliveries():
    from portal.provisioning.selectors import DeliveryFilter

    return DeliveryFilter()


def _summary():
    from portal.catalogue.models import ServiceStatus
    from portal.suppliers.statuspage import Summary

    return Summary(status=ServiceStatus.MAJOR_OUTAGE, description="x", incidents=())


def _group(w: World):
    return w.unsaved("portal.scim.models.ScimGroup", display_name="g")


def _connection(w: World):
    return w.unsaved("portal.sso.models.SsoConnection", issuer="https://idp.example")


def _claim(w: World):
    return w.unsaved("portal.sso.models.EmailDomain", domain="x.example", status="pending")


_SKIPPED_PACKAGES = ("portal.web", "portal.kernel.policy")
_SKIPPED_MODULES = {"portal.cli", "portal.demo", "portal.models", "portal.wsgi"}


def discover_entry_points() -> dict[str, Callable[..., Any]]:
    """Every public function of the portal (pages and wiring aside) with an ``actor``."""
    found: dict[str, Callable[..., Any]] = {}
    for info in pkgutil.walk_packages(portal.__path__, "portal."):
        name = info.name
        if name in _SKIPPED_MODULES or name.startswith(_SKIPPED_PACKAGES):
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.startswith("_") or not inspect.isfunction(value):
                continue
            if value.__module__ != name:
                continue
            if "actor" in inspect.signature(value).parameters:
                found[f"{name}.{attr}"] = value
    return found


def test_every_entry_point_is_in_the_table(app):
    found = set(discover_entry_points())
    missing = found - set(ENTRY_POINTS) - set(NOT_OPERATIONS)
    assert not missing, (
        "New service entry points taking an actor: add them to ENTRY_POINTS in "
        f"tests/test_policy.py (or to NOT_OPERATIONS with the reason): {sorted(missing)}"
    )
    gone = (set(ENTRY_POINTS) | set(NOT_OPERATIONS)) - found
    assert not gone, f"Entry points that no longer exist: {sorted(gone)}"


def _row_counts() -> dict[str, int]:
    session = db.session
    return {
        table.name: session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
        for table in db.metadata.sorted_tables
    }


@pytest.fixture
def world_refs(app, make_org, make_user, make_product, mid_month):
    """An organisation with a member holding a seat of a product, made by the system, and
    that seat's webhook delivery to the product's vendor (pending, due now)."""
    from portal.identity.models import User
    from portal.provisioning.models import Channel, Delivery, Event
    from portal.seats import services as seats
    from portal.tenancy.models import Organisation
    from tests.conftest import SYSTEM

    org = make_org("org-1")
    member = make_user("member", org)
    product = make_product(5, sku="cad-suite")
    with app.app_context():
        from portal.catalogue.models import Product

        outcome = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=2,
        )
        seat = seats.seat_assign(
            db.session,
            actor=SYSTEM,
            subscription=outcome.subscription,
            user_email=db.session.get(User, member.id).email,
        )
        delivery = Delivery(
            organisation_id=org.id,
            vendor_id=db.session.get(Product, product.id).vendor_id,
            channel=Channel.WEBHOOK,
            event=Event.SEAT_ASSIGNED,
            sequence_key=f"user:{member.id}",
            user_id=member.id,
            product_id=product.id,
            message_id="msg_policy_world",
            payload={},
        )
        db.session.add(delivery)
        db.session.commit()
        return org, member, product, outcome.subscription.id, seat.id, delivery.id


def _refusers(org_id: int) -> list[Actor]:
    return [
        Actor.anonymous("192.0.2.1"),
        Actor(
            label="x", kind=ActorKind.PERSON, user_id=None, role="pirate", organisation_id=org_id
        ),
        Actor(label="y", kind=ActorKind.PERSON, user_id=None, role=None, organisation_id=org_id),
    ]


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_anonymous_and_unknown_roles_are_refused_and_change_nothing(app, world_refs, name):
    function = discover_entry_points().get(name)
    assert function is not None, f"{name} no longer exists: take it out of ENTRY_POINTS"
    parameters = inspect.signature(function).parameters
    with app.test_request_context("/"):
        # The test's own reads and the calls run council-wide (PostgreSQL: row-level
        # security), so only the policy can refuse.
        bind_scope(db.session, Scope.council())
        world = World(*world_refs)
        before = _row_counts()
        audit_before = before.get("audit_events")
        for actor in _refusers(world.org.id):
            kwargs = ENTRY_POINTS[name](world)
            if "session" in parameters:
                kwargs["session"] = db.session
            kwargs["actor"] = actor
            if name in PUBLIC_ENTRY_POINTS:  # pragma: no cover (none is in ENTRY_POINTS)
                continue
            try:
                answer = function(**kwargs)
            except (PermissionDenied, NotFound):
                pass
            else:
                # A question ("may this actor …?") answers no instead of raising.
                assert answer is False, f"{name} let {actor.label} ({actor.kind}) through"
            # Refused before anything was written, flushed or not.
            assert not (db.session.new or db.session.dirty or db.session.deleted), name
            assert _row_counts() == before, name
            db.session.rollback()
        assert _row_counts().get("audit_events") == audit_before


def test_public_entry_points_are_the_public_actions():
    assert set(PUBLIC_ENTRY_POINTS.values()) == policy.PUBLIC
    assert set(PUBLIC_ENTRY_POINTS) <= set(NOT_OPERATIONS)
