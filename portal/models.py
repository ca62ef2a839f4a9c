"""Imports every model so the metadata (and Alembic) sees all tables.

Each table is listed in :data:`TABLE_SCOPES` as tenant-owned (``organisation_id
NOT NULL``), mixed (a nullable ``organisation_id``: council staff rows have
none) or council-wide. ``tests/test_tenancy_scope.py`` fails when a table is
missing from this map or breaks its scope.
"""

from portal.api.models import ApiToken, IdempotentRequest  # noqa: F401
from portal.audit.models import AuditChainHead, AuditEvent  # noqa: F401
from portal.billing.models import (  # noqa: F401
    CreditNote,
    DocumentCounter,
    Invoice,
    InvoiceLine,
    InvoiceProductTotal,
    InvoiceRun,
    Payment,
)
from portal.catalogue.models import LicencePool, Meter, Price, PriceTier, Product, Vendor  # noqa: F401
from portal.identity.models import (  # noqa: F401
    Invitation,
    Passkey,
    RecoveryCode,
    TotpFactor,
    User,
    UserSession,
)
from portal.jobs.models import Job  # noqa: F401
from portal.mail.models import MailMessage  # noqa: F401
from portal.metering.models import (  # noqa: F401
    IdleSeatDecision,
    UsageDaily,
    UsageDailyPerson,
    UsageEvent,
    UsageLastUse,
    UsageReportDay,
)
from portal.notifications.models import (  # noqa: F401
    Notification,
    NotificationDigest,
    NotificationPreference,
)
from portal.payments.models import PaymentAccount, PaymentCollection, StripeEvent  # noqa: F401
from portal.procurement.forecast_models import PoolReminder  # noqa: F401
from portal.procurement.models import (  # noqa: F401
    ProductRequest,
    PurchaseOrder,
    PurchaseOrderApproval,
    PurchaseOrderLine,
    VendorInvoice,
    VendorInvoiceLine,
)
from portal.provisioning.models import (  # noqa: F401
    Delivery,
    DeliveryAttempt,
    VendorProvisioning,
)
from portal.provisioning.reconcile_models import DriftFinding, ReconciliationRun  # noqa: F401
from portal.scim.models import ScimGroup, ScimGroupMember, ScimGroupProduct, ScimToken  # noqa: F401
from portal.seats.models import (  # noqa: F401
    SeatAssignment,
    SeatRequest,
    Subscription,
    SubscriptionChange,
)
from portal.settings.models import CouncilSetting  # noqa: F401
from portal.sso.models import EmailDomain, SsoConnection  # noqa: F401
from portal.suppliers.compliance_models import ComplianceDocument  # noqa: F401
from portal.suppliers.models import Incident, IncidentUpdate, VendorStatusInterval  # noqa: F401
from portal.tenancy.models import Organisation  # noqa: F401

TENANT = "tenant"
MIXED = "mixed"
COUNCIL = "council"

TABLE_SCOPES: dict[str, str] = {
    "organisations": COUNCIL,  # the tenants themselves
    "users": MIXED,  # council staff have no organisation
    "user_sessions": MIXED,
    "totp_factors": MIXED,  # second factors: council staff have no organisation
    "recovery_codes": MIXED,
    "passkeys": MIXED,  # WebAuthn credentials (second factor), like totp_factors
    "invitations": MIXED,  # council staff invitations have no organisation
    "audit_events": MIXED,  # council-wide changes have no organisation
    "audit_chain_head": COUNCIL,  # the audit hash chain's last link: one row for everyone
    # catalogue: the council's, read by every member
    "vendors": COUNCIL,
    "products": COUNCIL,
    "meters": COUNCIL,
    "licence_pools": COUNCIL,
    "prices": COUNCIL,
    "price_tiers": COUNCIL,
    "pool_reminders": COUNCIL,  # renewal-forecast reminders sent to council staff (issue 16)
    # seats: each row belongs to one organisation
    "subscriptions": TENANT,
    "subscription_changes": TENANT,
    "seat_assignments": TENANT,
    "seat_requests": TENANT,
    # API: council and vendor tokens have no organisation
    "api_tokens": MIXED,
    "idempotent_requests": MIXED,
    # metering
    "usage_events": TENANT,
    "usage_event_keys": TENANT,  # PostgreSQL: the counted-once rule across partitions
    "idle_seat_decisions": TENANT,
    "usage_daily": TENANT,  # rollups of usage_events kept at ingest
    "usage_daily_people": TENANT,
    "usage_last_use": TENANT,
    "usage_report_days": COUNCIL,  # a vendor's usage batches per day: counts only
    # council-wide settings
    "council_settings": COUNCIL,
    # billing
    "invoices": TENANT,
    "invoice_lines": TENANT,
    "invoice_product_totals": COUNCIL,  # a month's issued lines summed per product
    "product_seat_counts": COUNCIL,  # each product's seat figures, kept as they change
    "credit_notes": TENANT,
    "payments": TENANT,
    "invoice_runs": COUNCIL,  # one run covers every organisation
    "document_counters": COUNCIL,
    "jobs": COUNCIL,  # background jobs: the council's Jobs page
    "mail_messages": MIXED,  # recorded mail: council staff's has no organisation
    # card payments through Stripe
    "payment_accounts": TENANT,
    "payment_collections": TENANT,
    "stripe_events": MIXED,  # an event about no known customer has no organisation
    # single sign-on and SCIM provisioning: each row is one organisation's
    "sso_connections": TENANT,
    "email_domains": TENANT,
    "scim_tokens": TENANT,
    "scim_groups": TENANT,
    "scim_group_members": TENANT,
    "scim_group_products": TENANT,
    # notifications (issue 15): a person's; council staff's and vendor admins' have none
    "notifications": MIXED,
    "notification_preferences": MIXED,
    "notification_digests": TENANT,  # an org admin's daily digest
    # suppliers: compliance documents of vendors (issue 15), the council's
    "compliance_documents": COUNCIL,
    # suppliers online: a vendor's status history and incidents, public to every member
    "vendor_status_intervals": COUNCIL,
    "incidents": COUNCIL,
    "incident_updates": COUNCIL,
    # provisioning into vendors' applications (SPEC 8.4, issue 17)
    "vendor_provisioning": COUNCIL,  # one vendor's settings
    "provisioning_deliveries": TENANT,  # the person's (or subscription's) organisation
    "provisioning_delivery_attempts": TENANT,
    # reconciliation (issue 17): a vendor's users compared with the seats; covers every
    # organisation, and an extra person at the vendor may be nobody in the portal
    "provisioning_reconciliations": COUNCIL,
    "provisioning_drift": COUNCIL,
    # purchase orders to vendors (SPEC 8.3, issue 16): the council's own
    "purchase_orders": COUNCIL,
    "purchase_order_lines": COUNCIL,
    "purchase_order_approvals": COUNCIL,
    "vendor_invoices": COUNCIL,
    "vendor_invoice_lines": COUNCIL,
    # requests for products not in the catalogue (issue 16): the requester's organisation
    "product_requests": TENANT,
}
