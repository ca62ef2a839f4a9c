"""The kinds of notification: how each is worded, in the reader's language, and who may mute
its mail.

A notification is stored as a kind and its params; its words are made when it is read
(the page, the mail), in the reader's language. To add a kind (from any domain above
notifications, e.g. procurement or provisioning)::

    from portal.kernel.i18n import _
    from portal.notifications.kinds import Group, Kind, register

    register(
        Kind(
            name="provisioning.vendor_failing",
            group=Group.OPERATIONS,
            title=lambda p: _("Deliveries to %(vendor)s are failing", vendor=p["vendor"]),
            body=lambda p: _(
                "Every delivery to %(vendor)s failed for %(hours)s hours.", **p
            ),
        )
    )

at import time of a module ``create_app`` imports (the module that calls ``notify``), then
``notify(session, user_ids=…, kind="provisioning.vendor_failing", key=…, params={…})``.

* ``title`` and ``body`` take the params (a dict of JSON values: strings, numbers) and call
  ``_()`` with literal English text, so ``pybabel extract`` finds it; translate it in your
  part's catalogue. A param missing or of the wrong shape shows the kind's name, never a 500.
* ``group`` says which of the person's mail choices governs the kind (:class:`Group`);
  every notification is in the portal whatever they chose.
* Params are the values as they were (a vendor's name, an incident's title), never secrets:
  the list shows them as long as the row is kept.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from portal.kernel.i18n import _, _l

log = logging.getLogger("portal.notifications")


class Group(enum.StrEnum):
    """Which mail choice (``NotificationPreference.mail_<group>``) covers a kind."""

    INCIDENTS = "incidents"  # a supplier's incident opened, changed impact, resolved
    STANDING = "standing"  # a supplier's standing with the council changed
    OPERATIONS = "operations"  # council work: purchase orders, deliveries, reminders


#: The groups' labels, for the choices form.
GROUP_LABELS = {
    Group.INCIDENTS: _l("Incidents at suppliers whose software you use"),
    Group.STANDING: _l("Changes of a supplier's standing with the council"),
    Group.OPERATIONS: _l("Council work: purchase orders, deliveries, reminders"),
}

#: Groups whose notifications the org admins' daily digest lists.
DIGEST_GROUPS = (Group.INCIDENTS, Group.STANDING)

Render = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Kind:
    """A kind of notification: its name, its mail group, its title and body templates."""

    name: str
    group: Group
    title: Render
    body: Render


#: Every registered kind by name.
KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (again with the same name: replaced, for reloads)."""
    KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> Kind | None:
    return KINDS.get(name)


def _render(kind_name: str, part: str, params: Mapping[str, Any]) -> str:
    kind = KINDS.get(kind_name)
    if kind is None:
        return kind_name
    try:
        return str(getattr(kind, part)(params or {}))
    except (KeyError, TypeError, ValueError, AttributeError):
        log.warning("Notification %s: params do not fit its %s", kind_name, part)
        return kind_name if part == "title" else ""


def title(kind_name: str, params: Mapping[str, Any]) -> str:
    """The notification's title in the reader's language (the kind's name if unknown)."""
    return _render(kind_name, "title", params)


def body(kind_name: str, params: Mapping[str, Any]) -> str:
    """The notification's text in the reader's language (empty if it cannot be made)."""
    return _render(kind_name, "body", params)


# ------------------------------------------------------------------ labels of values

IMPACT_LABELS = {
    "none": _l("no impact"),
    "minor": _l("minor"),
    "major": _l("major"),
    "critical": _l("critical"),
}
STANDING_LABELS = {
    "active": _l("active"),
    "under_review": _l("under review"),
    "suspended": _l("suspended"),
}


def _label(labels: Mapping[str, Any], value: Any) -> str:
    return str(labels.get(str(value), value))


# ------------------------------------------------------------------ this package's kinds

INCIDENT_OPENED = "incident.opened"
INCIDENT_IMPACT_CHANGED = "incident.impact_changed"
INCIDENT_RESOLVED = "incident.resolved"
VENDOR_STANDING_CHANGED = "vendor.standing_changed"

register(
    Kind(
        name=INCIDENT_OPENED,
        group=Group.INCIDENTS,
        title=lambda p: _(
            "Incident at %(vendor)s: %(title)s", vendor=p["vendor"], title=p["title"]
        ),
        body=lambda p: _(
            "%(vendor)s reported an incident (impact: %(impact)s): %(title)s. "
            "Your software from this supplier may not work as it should.",
            vendor=p["vendor"],
            impact=_label(IMPACT_LABELS, p["impact"]),
            title=p["title"],
        ),
    )
)
register(
    Kind(
        name=INCIDENT_IMPACT_CHANGED,
        group=Group.INCIDENTS,
        title=lambda p: _(
            "Incident at %(vendor)s is now %(impact)s",
            vendor=p["vendor"],
            impact=_label(IMPACT_LABELS, p["impact"]),
        ),
        body=lambda p: _(
            "The impact of the incident at %(vendor)s (%(title)s) changed to %(impact)s.",
            vendor=p["vendor"],
            impact=_label(IMPACT_LABELS, p["impact"]),
            title=p["title"],
        ),
    )
)
register(
    Kind(
        name=INCIDENT_RESOLVED,
        group=Group.INCIDENTS,
        title=lambda p: _(
            "Resolved at %(vendor)s: %(title)s", vendor=p["vendor"], title=p["title"]
        ),
        body=lambda p: _(
            "%(vendor)s resolved the incident: %(title)s.", vendor=p["vendor"], title=p["title"]
        ),
    )
)


def _standing_body(p: Mapping[str, Any]) -> str:
    text = _(
        "The council changed the standing of %(vendor)s from %(old)s to %(standing)s.",
        vendor=p["vendor"],
        old=_label(STANDING_LABELS, p["old"]),
        standing=_label(STANDING_LABELS, p["standing"]),
    )
    if p.get("note"):
        text += " " + _("The council's note: %(note)s", note=p["note"])
    return text


register(
    Kind(
        name=VENDOR_STANDING_CHANGED,
        group=Group.STANDING,
        title=lambda p: _(
            "%(vendor)s is now %(standing)s",
            vendor=p["vendor"],
            standing=_label(STANDING_LABELS, p["standing"]),
        ),
        body=lambda p: _standing_body(p),
    )
)
