"""Domain signals: how one domain reacts to another's change without importing it.

Receivers run inside the same database transaction as the change. For example
identity revokes the sign-in sessions of a suspended organisation's users, and
the seats domain releases a deactivated user's seats. A receiver may refuse a
change by raising a :class:`~portal.kernel.errors.DomainError` where the signal
says so (a lower domain asking a higher one, e.g. seats asking billing whether an
organisation may subscribe). Receivers connect when their module is imported;
:func:`portal.create_app` imports every such module.
"""

from blinker import Namespace

_signals = Namespace()

#: sent with the organisation; kwargs: session, actor, old_status
organisation_status_changed = _signals.signal("organisation-status-changed")
#: sent with the user; kwargs: session, actor
user_deactivated = _signals.signal("user-deactivated")
#: sent with the product when a pool of it is created or changed; kwargs: session, actor
pool_capacity_changed = _signals.signal("pool-capacity-changed")
#: sent with the product when reserved seats of it are given back; kwargs: session, actor
seats_freed = _signals.signal("seats-freed")
#: sent with the invoice when it is finalised; kwargs: session, actor (PDF, mail, collection)
invoice_finalised = _signals.signal("invoice-finalised")
#: sent with the organisation before it takes a new subscription; kwargs: session, today.
#: A receiver refuses by raising a DomainError (billing: overdue invoices hold it back).
subscription_opening = _signals.signal("subscription-opening")
#: sent with a pool after a change of its capacity or end is flushed, before it is recorded;
#: kwargs: session. A receiver refuses by raising a DomainError (seats: capacity in force
#: below the seats reserved).
pool_changing = _signals.signal("pool-changing")

# ---------------------------------------------------------------- the second wave (SPEC 8)
#: sent with the vendor after its standing (``status``) changed; kwargs: session, actor,
#: old_status. Notifications tell the people holding its products' seats (SPEC 8.2).
vendor_standing_changed = _signals.signal("vendor-standing-changed")
#: sent with the vendor after its service status changed; kwargs: session, actor,
#: old_status, source (``vendor``, ``council`` or ``statuspage``).
vendor_service_status_changed = _signals.signal("vendor-service-status-changed")
#: sent with the incident after it opened, changed impact, got an update or resolved;
#: kwargs: session, actor, change (``opened|impact_changed|updated|resolved``).
vendor_incident_changed = _signals.signal("vendor-incident-changed")
#: sent with the seat assignment after it is flushed; kwargs: session, actor. Provisioning
#: writes its outbox row in the same transaction (SPEC 8.4).
seat_assigned = _signals.signal("seat-assigned")
#: sent with the seat assignment after its release is flushed; kwargs: session, actor.
seat_released = _signals.signal("seat-released")
#: sent with the user after their name, email or other profile fields changed; kwargs:
#: session, actor, fields (the names of the changed attributes).
user_profile_changed = _signals.signal("user-profile-changed")
#: sent with the subscription after it opened, was resized or cancelled; kwargs: session,
#: actor, change (``opened|resized|cancelled``).
subscription_changed = _signals.signal("subscription-changed")
