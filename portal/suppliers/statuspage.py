"""The Statuspage poller: vendors' service status and incidents read from their status page.

A vendor with a ``status_page_url`` (the base of a Statuspage-format site) is read every
:data:`POLL_EVERY` by the scheduled job ``suppliers.poll_status`` (and by hand with
``portal suppliers poll [--vendor SLUG]``): ``GET <base>/api/v2/summary.json`` with a short
timeout, tried again after a connection failure, a timeout or a 5xx. What it says:

* ``status.indicator`` (``none|minor|major|critical|maintenance``) and the components'
  statuses give the service status: the worse of the two (:func:`service_status_of`);
  ``status.description`` is its message. Set through
  :func:`~portal.suppliers.services.set_service_status` (source ``statuspage``): the same
  status polled again is no new interval and no signal.
* ``incidents`` (Statuspage lists the unresolved ones) are imported by their id: a new one
  is opened (one ``opened`` signal, its earlier updates kept as history), new updates or a
  new state or impact become one update (one signal), a listed ``resolved``/``postmortem``
  one or one no longer listed is resolved.

A failure (refused connection, timeout, an HTTP error, a body that is not a summary)
changes nothing but ``status_poll_error`` and ``status_poll_failed_at``: the last good
reading stays and is shown as stale (:func:`portal.suppliers.selectors.reading_stale`).
Nothing here raises for a vendor's bad answer; each vendor is applied in a savepoint, so
one vendor's trouble leaves the others' readings in.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import ServiceStatus, StatusSource, Vendor
from portal.db import read_only
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _
from portal.kernel.policy import Action
from portal.suppliers import selectors, services
from portal.suppliers.models import Incident, IncidentImpact, IncidentState, IncidentUpdate

log = logging.getLogger("portal.suppliers.statuspage")

POLL_EVERY = dt.timedelta(minutes=5)
#: Seconds to connect and to wait for the answer, per try.
TIMEOUT = 5.0
#: Tries after the first, after a refused connection, a timeout or a 5xx.
RETRIES = 2
#: Seconds before the first retry (doubling).
RETRY_PAUSE = 0.5
#: A summary larger than this is refused.
MAX_BYTES = 1_000_000
#: Vendors read at once.
PARALLEL = 8
SUMMARY_PATH = "/api/v2/summary.json"

INDICATOR_STATUS = {
    "none": ServiceStatus.OPERATIONAL,
    "minor": ServiceStatus.DEGRADED,
    "major": ServiceStatus.PARTIAL_OUTAGE,
    "critical": ServiceStatus.MAJOR_OUTAGE,
    "maintenance": ServiceStatus.MAINTENANCE,
}
COMPONENT_STATUS = {
    "operational": ServiceStatus.OPERATIONAL,
    "degraded_performance": ServiceStatus.DEGRADED,
    "partial_outage": ServiceStatus.PARTIAL_OUTAGE,
    "major_outage": ServiceStatus.MAJOR_OUTAGE,
    "under_maintenance": ServiceStatus.MAINTENANCE,
}
#: Worse is higher: an outage anywhere outweighs maintenance elsewhere.
SEVERITY = {
    ServiceStatus.OPERATIONAL: 0,
    ServiceStatus.MAINTENANCE: 1,
    ServiceStatus.DEGRADED: 2,
    ServiceStatus.PARTIAL_OUTAGE: 3,
    ServiceStatus.MAJOR_OUTAGE: 4,
}
INCIDENT_STATE = {
    "investigating": IncidentState.INVESTIGATING,
    "identified": IncidentState.IDENTIFIED,
    "monitoring": IncidentState.MONITORING,
    "resolved": IncidentState.RESOLVED,
    "postmortem": IncidentState.RESOLVED,
}


class SummaryError(ValueError):
    """The status page's answer is not a usable summary."""


@dataclass(frozen=True)
class RemoteUpdate:
    external_id: str
    state: IncidentState
    body: str
    created_at: dt.datetime | None


@dataclass(frozen=True)
class RemoteIncident:
    external_id: str
    title: str
    impact: IncidentImpact
    state: IncidentState
    created_at: dt.datetime | None
    updates: tuple[RemoteUpdate, ...]  # oldest first


@dataclass(frozen=True)
class Summary:
    status: ServiceStatus
    description: str | None
    incidents: tuple[RemoteIncident, ...]


@dataclass
class PollResult:
    """What one poll of one vendor did."""

    vendor_slug: str
    ok: bool
    error: str | None = None
    status_changed: bool = False
    incidents_opened: int = 0
    incidents_updated: int = 0
    incidents_resolved: int = 0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading the page


def summary_url(base: str) -> str:
    return base.rstrip("/") + SUMMARY_PATH


def fetch(
    url: str, *, timeout: float = TIMEOUT, retries: int = RETRIES, pause: float = RETRY_PAUSE
) -> bytes:
    """The summary's bytes; raises :class:`SummaryError` with a short reason after the tries.

    No redirects are followed (the council chose the address) and at most
    :data:`MAX_BYTES` are read.
    """
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(pause * 2 ** (attempt - 1))
        try:
            with requests.get(
                url,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json", "User-Agent": "licensing-portal/1"},
            ) as response:
                if response.status_code >= 500:
                    reason = f"HTTP {response.status_code}"
                    continue
                if response.status_code != 200:
                    raise SummaryError(f"HTTP {response.status_code}")
                body = bytearray()
                # The read timeout is per chunk: a page dripping bytes is cut off too.
                deadline = time.monotonic() + 2 * timeout
                for chunk in response.iter_content(65536):
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise SummaryError(f"the answer is larger than {MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise requests.Timeout("the answer is too slow")
                return bytes(body)
        except requests.Timeout:
            reason = f"no answer within {timeout:g} s"
        except requests.ConnectionError as error:
            reason = f"cannot connect ({type(error).__name__})"
        except requests.RequestException as error:
            raise SummaryError(f"request failed ({type(error).__name__})") from None
    raise SummaryError(f"{reason} (tried {retries + 1} times)")


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value if ch in "\n\t" or ord(ch) >= 32).strip()
    return cleaned[:limit] or None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(dt.UTC)


def service_status_of(indicator: str, components: Sequence[str]) -> ServiceStatus:
    """The service status a page's indicator and components' statuses say: the worst."""
    statuses = [INDICATOR_STATUS[indicator]]
    statuses += [COMPONENT_STATUS[c] for c in components if c in COMPONENT_STATUS]
    return max(statuses, key=lambda status: SEVERITY[status])


def parse_summary(body: bytes) -> Summary:
    """A Statuspage ``summary.json`` document; :class:`SummaryError` if it is not one.

    A malformed incident or update is skipped; a missing or unknown indicator fails
    the whole reading.
    """
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SummaryError("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise SummaryError("the answer is not a summary (no object)")
    status = document.get("status")
    indicator = status.get("indicator") if isinstance(status, dict) else None
    if indicator not in INDICATOR_STATUS:
        raise SummaryError("the answer is not a summary (no known status.indicator)")
    components = document.get("components")
    component_statuses: list[str] = [
        str(c["status"])
        for c in (components if isinstance(components, list) else [])
        if isinstance(c, dict) and isinstance(c.get("status"), str)
    ]
    incidents = []
    raw_incidents = document.get("incidents")
    for raw in raw_incidents if isinstance(raw_incidents, list) else []:
        incident = _incident(raw)
        if incident is not None:
            incidents.append(incident)
    return Summary(
        status=service_status_of(indicator, component_statuses),
        description=_text(status.get("description"), services.MESSAGE_MAX),  # type: ignore[union-attr]
        incidents=tuple(incidents),
    )


def _incident(raw: Any) -> RemoteIncident | None:
    if not isinstance(raw, dict):
        return None
    external_id = _text(raw.get("id"), 100)
    title = _text(raw.get("name"), services.TITLE_MAX)
    state = INCIDENT_STATE.get(raw.get("status"))  # type: ignore[arg-type]
    if external_id is None or title is None or state is None:
        return None
    impact_text = raw.get("impact")
    impact = (
        IncidentImpact(impact_text)
        if impact_text in {i.value for i in IncidentImpact}
        else IncidentImpact.NONE
    )
    updates = []
    raw_updates = raw.get("incident_updates")
    for item in raw_updates if isinstance(raw_updates, list) else []:
        if not isinstance(item, dict):
            continue
        update_id = _text(item.get("id"), 100)
        update_state = INCIDENT_STATE.get(item.get("status"))  # type: ignore[arg-type]
        if update_id is None or update_state is None:
            continue
        updates.append(
            RemoteUpdate(
                external_id=update_id,
                state=update_state,
                body=_text(item.get("body"), services.BODY_MAX) or title,
                created_at=_time(item.get("created_at")),
            )
        )
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    updates.sort(key=lambda u: (u.created_at or oldest, u.external_id))
    return RemoteIncident(
        external_id=external_id,
        title=title,
        impact=impact,
        state=state,
        created_at=_time(raw.get("created_at")),
        updates=tuple(updates),
    )


# ---------------------------------------------------------------- applying a reading


def apply_summary(session: Session, actor: Actor, vendor: Vendor, summary: Summary) -> PollResult:
    """Bring the vendor's status and its status page incidents in line with ``summary``."""
    result = PollResult(vendor_slug=vendor.slug, ok=True)
    result.status_changed = services.set_service_status(
        session,
        actor,
        vendor,
        summary.status,
        summary.description,
        source=StatusSource.STATUSPAGE,
    )
    listed = {incident.external_id for incident in summary.incidents}
    for remote in summary.incidents:
        _apply_incident(session, actor, vendor, remote, result)
    for incident in selectors.open_incidents(session, vendor.id):
        if (
            incident.source == StatusSource.STATUSPAGE
            and incident.external_id is not None
            and incident.external_id not in listed
        ):
            services.add_incident_update(
                session,
                actor,
                incident,
                body=_("No longer listed on the status page: resolved."),
                state=IncidentState.RESOLVED,
            )
            result.incidents_resolved += 1
    vendor.status_polled_at = now_utc()
    vendor.status_poll_failed_at = None
    vendor.status_poll_error = None
    session.flush()
    return result


def _apply_incident(
    session: Session, actor: Actor, vendor: Vendor, remote: RemoteIncident, result: PollResult
) -> None:
    incident = session.scalar(
        sa.select(Incident).where(
            Incident.vendor_id == vendor.id, Incident.external_id == remote.external_id
        )
    )
    if incident is None:
        if remote.state == IncidentState.RESOLVED:
            return  # over before we saw it: not imported
        latest = remote.updates[-1] if remote.updates else None
        incident = services.open_incident(
            session,
            actor,
            vendor,
            title=remote.title,
            impact=remote.impact,
            body=latest.body if latest else remote.title,
            state=remote.state,
            source=StatusSource.STATUSPAGE,
            external_id=remote.external_id,
            opened_at=remote.created_at,
        )
        if latest is not None:
            incident.updates[0].external_id = latest.external_id
            incident.updates[0].created_at = max(
                min(latest.created_at or incident.opened_at, now_utc()), incident.opened_at
            )
            _history(session, vendor, incident, remote.updates[:-1])
        result.incidents_opened += 1
        return
    if not incident.is_open:
        return  # resolved here: later words on the page are not imported
    seen = {update.external_id for update in incident.updates if update.external_id}
    fresh = [update for update in remote.updates if update.external_id not in seen]
    if not fresh and remote.state == incident.state and remote.impact == incident.impact:
        return
    _history(session, vendor, incident, fresh[:-1])
    last = fresh[-1] if fresh else None
    services.add_incident_update(
        session,
        actor,
        incident,
        body=last.body if last else _("The status page changed this incident's state or impact."),
        state=remote.state,
        impact=remote.impact,
        external_id=last.external_id if last else None,
        created_at=last.created_at if last else None,
    )
    if remote.state == IncidentState.RESOLVED:
        result.incidents_resolved += 1
    else:
        result.incidents_updated += 1


def _history(
    session: Session, vendor: Vendor, incident: Incident, updates: Sequence[RemoteUpdate]
) -> None:
    """Earlier updates of the page kept as the incident's history (no signal each)."""
    now = now_utc()
    for update in updates:
        created = update.created_at or now
        incident.updates.append(
            IncidentUpdate(
                state=update.state,
                impact=incident.impact,
                body=update.body,
                created_at=max(min(created, now), incident.opened_at),
                author=f"{vendor.name} (status page)"[:254],
                external_id=update.external_id,
            )
        )
    session.flush()


def record_failure(session: Session, vendor: Vendor, reason: str) -> None:
    vendor.status_poll_error = reason[:500]
    vendor.status_poll_failed_at = now_utc()
    session.flush()


# ---------------------------------------------------------------- polling


@dataclass(frozen=True)
class Target:
    """A status page to read: taken from the vendor row before any network call."""

    vendor_id: int
    slug: str
    base_url: str

    @property
    def url(self) -> str:
        return summary_url(self.base_url)


def targets_of(vendors: Sequence[Vendor]) -> list[Target]:
    return [Target(v.id, v.slug, v.status_page_url) for v in vendors if v.status_page_url]


def read_pages(
    targets: Sequence[Target],
    *,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    pause: float = RETRY_PAUSE,
) -> list[Summary | str]:
    """Each target's summary, or the reason it could not be read (:data:`PARALLEL` at a
    time). Touches no database: call it with no transaction open, so no lock is held while
    the network answers."""

    def read(url: str) -> Summary | str:
        try:
            return parse_summary(fetch(url, timeout=timeout, retries=retries, pause=pause))
        except SummaryError as error:
            return str(error)
        except Exception as error:  # noqa: BLE001 (a vendor's page never stops the poll)
            log.warning("status page %s: %s", url, error, exc_info=True)
            return f"unexpected failure ({type(error).__name__})"

    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(targets))) as pool:
        return list(pool.map(read, [target.url for target in targets]))


def apply_readings(
    session: Session,
    actor: Actor,
    targets: Sequence[Target],
    readings: Sequence[Summary | str],
) -> list[PollResult]:
    """Apply each reading to its vendor, one after another, each in a savepoint: a good one
    through :func:`apply_summary`, a failure as :func:`record_failure`. A vendor removed, or
    given another address, since its page was read is left alone."""
    policy.require(actor, Action.VENDOR_SERVICE_STATUS_SET)
    policy.require(actor, Action.VENDOR_INCIDENT_MANAGE)
    results = []
    for target, reading in zip(targets, readings, strict=True):
        vendor = session.get(Vendor, target.vendor_id)
        if vendor is None or vendor.status_page_url != target.base_url:
            continue
        if isinstance(reading, str):
            record_failure(session, vendor, reading)
            results.append(PollResult(vendor_slug=vendor.slug, ok=False, error=reading))
            continue
        try:
            with session.begin_nested():
                results.append(apply_summary(session, actor, vendor, reading))
        except (DomainError, sa.exc.IntegrityError) as error:
            # A rule refused it, or another poll of the same page got there first (the
            # next poll finds its work done): recorded, never raised.
            session.refresh(vendor)
            detail = error.detail if isinstance(error, DomainError) else "a concurrent change"
            reason = f"the summary could not be applied: {detail}"
            record_failure(session, vendor, reason)
            results.append(PollResult(vendor_slug=vendor.slug, ok=False, error=reason))
    return results


def poll_vendors(
    session: Session,
    actor: Actor,
    vendors: Sequence[Vendor],
    *,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    pause: float = RETRY_PAUSE,
) -> list[PollResult]:
    """Read the vendors' status pages and apply the readings, in the caller's transaction.
    Never raises for a vendor's answer. (The job and the CLI end their read transaction
    before the network calls: :func:`poll_outside_transaction`.)"""
    policy.require(actor, Action.VENDOR_SERVICE_STATUS_SET)
    targets = targets_of(vendors)
    readings = read_pages(targets, timeout=timeout, retries=retries, pause=pause)
    return apply_readings(session, actor, targets, readings)


def poll_outside_transaction(
    session: Session, actor: Actor, *, slug: str | None = None, timeout: float = TIMEOUT
) -> tuple[list[Vendor], list[PollResult]]:
    """The job's and the CLI's poll: read the targets in a read-only transaction and end
    it, wait for the pages with no transaction (nor lock) open, then apply the readings in
    a new one that the caller commits. Returns the vendors read and the results."""
    policy.require(actor, Action.VENDOR_SERVICE_STATUS_SET)
    read_only(session)
    vendors = selectors.vendors_with_status_page(session, slug=slug)
    targets = targets_of(vendors)
    session.commit()
    readings = read_pages(targets, timeout=timeout)
    results = apply_readings(session, actor, targets, readings)
    return vendors, results


@job("suppliers.poll_status", max_attempts=1, every=POLL_EVERY)
def poll_status_job(session: Session, *, actor: Actor, vendor: str | None = None) -> None:
    """Read every vendor's status page (or ``vendor``'s): the schedule's every 5 minutes."""
    policy.require(actor, Action.JOB_RUN)
    poll_outside_transaction(session, actor, slug=vendor)
