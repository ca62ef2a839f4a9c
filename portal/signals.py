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
