"""The portal as a SCIM 2.0 client of a vendor's application (SPEC 8.4, issue 17).

The requests and the resources are built and checked by ``scim2-client`` and
``scim2-models`` (the python-scim project) over ``httpx2``; this module says what each
change means at the vendor:

* ``seat.assigned``: find the person by ``userName`` (their email, a quoted filter, or the
  ``externalId`` the portal gave them: their portal user id) or create them (``userName``,
  ``name``, ``emails``, ``active: true``, ``externalId``); a person found inactive is
  activated. With ``group_push`` the person is also added to the product's group (a group
  per product, ``externalId`` = the product's SKU, created on first need).
* ``seat.released``: with ``group_push``, out of the product's group; then, when the person
  holds no other seat of that vendor's products (read when the delivery runs), deactivated
  (``PATCH active: false``) or deleted, as the vendor's ``on_release`` says.
* ``user.deactivated`` (in the portal, or by the member's own IdP over the portal's
  ``/scim/v2``): deactivated or deleted.
* ``user.updated`` (a profile change): ``PATCH`` of ``userName``, ``name`` and ``emails``
  of a person the vendor holds (nothing to do for one it does not).
* ``subscription.changed``: nothing for SCIM (webhooks only).

Each delivery answers an :class:`~portal.provisioning.transport.Outcome`: delivered;
retry later on a timeout, a refused connection, a 5xx or a 429 (with the ``Retry-After``
the server asked for); failed at once on any other 4xx (a 404 or 409 the client can
handle is handled: a person gone is as good as deactivated, a person created meanwhile
is found). The exchanges (method, URL, bodies; never the token) go in the Outcome for
the delivery log, cut to a few kilobytes.

Reading a vendor's users for reconciliation (:func:`Directory.users`, paginated
``ListResponse``) and :func:`test_connection` (``ServiceProviderConfig``) live here too.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx2
import sqlalchemy as sa
from scim2_client.client import describe_resource_models
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_client.errors import RequestNetworkException, SCIMClientException
from scim2_models import (
    Email,
    Group,
    ListResponse,
    Name,
    PatchOp,
    Resource,
    SCIMException,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    User,
)
from sqlalchemy.orm import Session

from portal.catalogue.models import Product
from portal.identity.models import User as PortalUser
from portal.kernel.clock import now_utc
from portal.provisioning.transport import Outcome
from portal.seats.models import SeatAssignment

ResourceT = TypeVar("ResourceT", bound=Resource[Any])

#: Seconds a request to a vendor may take (connecting: less).
TIMEOUT = httpx2.Timeout(10.0, connect=5.0)
#: What one side of the log keeps of the exchanges of one delivery.
LOG_LIMIT = 4000
#: Users read per page when listing a vendor's users.
PAGE_SIZE = 100
#: A Retry-After the portal honours at most (longer: the engine's own backoff decides).
MAX_RETRY_AFTER = 6 * 3600


class ScimSettings(Protocol):
    """What the client needs of a vendor's settings (``VendorProvisioning``)."""

    @property
    def vendor_id(self) -> int: ...

    @property
    def scim_base_url(self) -> str | None: ...

    @property
    def group_push(self) -> bool: ...

    @property
    def on_release(self) -> str: ...

    def scim_token(self) -> str | None: ...


class ScimDelivery(Protocol):
    """What the client needs of a delivery (``Delivery``)."""

    @property
    def event(self) -> str: ...

    @property
    def user_id(self) -> int | None: ...

    @property
    def product_id(self) -> int | None: ...

    @property
    def payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Person:
    """A person as the vendor is told about them."""

    user_id: int
    email: str
    name: str = ""
    given_name: str | None = None
    family_name: str | None = None

    @classmethod
    def of(cls, user: PortalUser) -> Person:
        return cls(
            user_id=user.id,
            email=user.email,
            name=user.name or "",
            given_name=user.given_name,
            family_name=user.family_name,
        )

    @classmethod
    def from_payload(cls, user_id: int | None, payload: dict[str, Any]) -> Person | None:
        """The person as the change's snapshot saw them (their account may be gone)."""
        person = (payload.get("data") or {}).get("person") or {}
        address = person.get("email")
        if not isinstance(address, str) or not address:
            return None
        return cls(user_id=user_id or 0, email=address, name=str(person.get("name") or ""))

    @property
    def external_id(self) -> str:
        return str(self.user_id)

    def resource(self, *, active: bool = True) -> User:
        formatted = self.name or self.email
        return User(
            user_name=self.email,
            external_id=self.external_id,
            display_name=formatted,
            name=Name(
                formatted=formatted,
                given_name=self.given_name or None,
                family_name=self.family_name or None,
            ),
            emails=[Email(value=self.email, primary=True, type=Email.Type.work)],
            active=active,
        )


def patch(model: type[ResourceT], *operations: tuple[str, str, Any]) -> PatchOp[ResourceT]:
    """A PATCH request of ``(op, path, value)`` operations (RFC 7644 §3.5.2), checked by
    scim2-models (``value`` None: none sent, as a ``remove`` has)."""
    return PatchOp[model].model_validate(  # type: ignore[valid-type]
        {
            "Operations": [
                {"op": op, "path": path, **({} if value is None else {"value": value})}
                for op, path, value in operations
            ]
        }
    )


def search(**parameters: Any) -> SearchRequest[Any]:
    """A list request's parameters (``filter``, ``startIndex``, ``count``), checked."""
    return SearchRequest.model_validate({k: v for k, v in parameters.items() if v is not None})


def quoted(value: str) -> str:
    """A SCIM filter's string literal (RFC 7644 §3.4.2.2: JSON string syntax)."""
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------ the wire


class Exchanges:
    """What went over the wire for one delivery: the log's request and answer sides."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.responses: list[str] = []
        self.status: int | None = None

    def on_request(self, request: httpx2.Request) -> None:
        body = request.content.decode("utf-8", "replace") if request.content else ""
        self.requests.append(f"{request.method} {request.url}\n{body}".rstrip())

    def on_response(self, response: httpx2.Response) -> None:
        response.read()
        self.status = response.status_code
        self.responses.append(f"{response.status_code}\n{response.text}".rstrip())

    @staticmethod
    def cut(parts: list[str]) -> str:
        text = "\n\n".join(parts)
        return text if len(text) <= LOG_LIMIT else text[: LOG_LIMIT - 1] + "…"

    @property
    def request(self) -> str:
        return self.cut(self.requests)

    @property
    def response(self) -> str:
        return self.cut(self.responses)


_PROVIDER_LOCK = threading.Lock()
_PROVIDER: ScimProvider | None = None
_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every delivery of the process: building one reads the
    trust store (tens of milliseconds), which each new client would otherwise do."""
    global _SSL
    with _PROVIDER_LOCK:
        if _SSL is None:
            _SSL = httpx2.create_ssl_context()
        return _SSL


def _provider() -> ScimProvider:
    """The description of a vendor's server the client assumes: RFC 7643's User and Group
    at ``/Users`` and ``/Groups`` (no discovery round trips per delivery)."""
    global _PROVIDER
    with _PROVIDER_LOCK:
        if _PROVIDER is None:
            models, resource_types = describe_resource_models([User, Group])
            _PROVIDER = ScimProvider(models=models, resource_types=resource_types)
        return _PROVIDER


@dataclass
class Directory:
    """A vendor's SCIM service, as one delivery (or one reconciliation) talks to it."""

    base_url: str
    token: str | None
    exchanges: Exchanges = field(default_factory=Exchanges)
    transport: httpx2.BaseTransport | None = None

    def __post_init__(self) -> None:
        headers = {"Accept": "application/scim+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.http = httpx2.Client(
            base_url=self.base_url.rstrip("/"),
            headers=headers,
            timeout=TIMEOUT,
            follow_redirects=False,
            verify=_ssl_context(),
            event_hooks={
                "request": [self.exchanges.on_request],
                "response": [self.exchanges.on_response],
            },
            transport=self.transport,
        )
        self.scim = SyncSCIMClient(self.http, provider=_provider())

    @classmethod
    def for_settings(cls, settings: ScimSettings) -> Directory:
        if not settings.scim_base_url:
            raise ValueError("the vendor has no SCIM base URL")
        return cls(settings.scim_base_url, settings.scim_token())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- reads

    def service_provider_config(self) -> ServiceProviderConfig:
        config = self.scim.query(ServiceProviderConfig)
        if not isinstance(config, ServiceProviderConfig):
            raise SCIMClientException("the server did not describe itself")
        return config

    def find(self, person: Person) -> User | None:
        """The vendor's record of ``person``: by ``userName``, else by the ``externalId``
        the portal gave them (their email may have changed since).

        Two plain ``eq`` filters rather than one ``or``: every SCIM service filters on
        ``eq`` (some on nothing else), and answers it from an index.
        """
        by_name = self._search(f"userName eq {quoted(person.email)}")
        if by_name:
            # Prefer the one holding the portal's id (a namesake made by hand comes second).
            by_name.sort(key=lambda user: user.external_id != person.external_id)
            return by_name[0]
        by_id = self._search(f"externalId eq {quoted(person.external_id)}")
        return by_id[0] if by_id else None

    def _search(self, wanted: str) -> list[User]:
        found = self.scim.query(User, query_parameters=search(filter=wanted, count=2))
        return list(found.resources or []) if isinstance(found, ListResponse) else []

    def users(self, page_size: int = PAGE_SIZE) -> Iterator[User]:
        """Every user the vendor holds, page by page (``startIndex``/``count``)."""
        start = 1
        while True:
            page = self.scim.query(User, query_parameters=search(startIndex=start, count=page_size))
            if not isinstance(page, ListResponse):
                return
            resources = list(page.resources or [])
            yield from resources
            start += len(resources)
            if not resources or start > (page.total_results or 0):
                return

    def find_group(self, sku: str) -> Group | None:
        found = self.scim.query(
            Group, query_parameters=search(filter=f"externalId eq {quoted(sku)}", count=1)
        )
        resources = list(found.resources or []) if isinstance(found, ListResponse) else []
        return resources[0] if resources else None

    # ---------------------------------------------------------------- writes

    def _set_active(self, user_id: str, active: bool) -> None:
        self.scim.modify(User, user_id, patch(User, ("replace", "active", active)))

    def provision(self, person: Person) -> User:
        """Find or create ``person``, active (an inactive record is activated)."""
        found = self.find(person)
        if found is None:
            try:
                created = self.scim.create(person.resource(active=True))
            except SCIMException as error:
                if _status(error) != 409:
                    raise
                # Created meanwhile (a retry after a lost answer, or by someone else).
                found = self.find(person)
                if found is None:
                    raise
            else:
                assert isinstance(created, User)
                return created
        assert found.id is not None
        if found.active is False:
            self._set_active(found.id, True)
            found.active = True
        return found

    def retire(self, person: Person, *, delete: bool) -> bool:
        """Deactivate (or delete) ``person`` at the vendor; False if they hold no record."""
        found = self.find(person)
        if found is None or found.id is None:
            return False
        try:
            if delete:
                self.scim.delete(User, found.id)
            elif found.active is not False:
                self._set_active(found.id, False)
        except SCIMException as error:
            if _status(error) != 404:  # gone meanwhile: as good as retired
                raise
        return True

    def retire_id(self, resource_id: str, *, delete: bool) -> None:
        """Deactivate (or delete) the vendor's user ``resource_id`` (reconciliation)."""
        try:
            if delete:
                self.scim.delete(User, resource_id)
            else:
                self._set_active(resource_id, False)
        except SCIMException as error:
            if _status(error) != 404:
                raise

    def update(self, person: Person) -> bool:
        """Bring the vendor's record of ``person`` up to date; False if it holds none."""
        found = self.find(person)
        if found is None or found.id is None:
            return False
        formatted = person.name or person.email
        operations: list[tuple[str, str, Any]] = [
            ("replace", "userName", person.email),
            ("replace", "displayName", formatted),
            ("replace", "name.formatted", formatted),
            ("replace", "emails", [{"value": person.email, "primary": True, "type": "work"}]),
        ]
        if person.given_name:
            operations.append(("replace", "name.givenName", person.given_name))
        if person.family_name:
            operations.append(("replace", "name.familyName", person.family_name))
        self.scim.modify(User, found.id, patch(User, *operations))
        return True

    def group(self, product: Product) -> Group:
        """The product's group at the vendor, created on first need."""
        found = self.find_group(product.sku)
        if found is not None:
            return found
        created = self.scim.create(Group(display_name=product.name, external_id=product.sku))
        assert isinstance(created, Group)
        return created

    def join(self, product: Product, member_id: str) -> None:
        group = self.group(product)
        assert group.id is not None
        if any(m.value == member_id for m in group.members or []):
            return
        self.scim.modify(Group, group.id, patch(Group, ("add", "members", [{"value": member_id}])))

    def leave(self, product: Product, person: Person) -> None:
        found = self.find(person)
        group = self.find_group(product.sku)
        if found is None or found.id is None or group is None or group.id is None:
            return
        if not any(m.value == found.id for m in group.members or []):
            return
        remove = ("remove", f"members[value eq {quoted(found.id)}]", None)
        try:
            self.scim.modify(Group, group.id, patch(Group, remove))
        except SCIMException as error:
            if _status(error) != 404:
                raise


# ------------------------------------------------------------------ outcomes


def _status(error: BaseException) -> int | None:
    source = getattr(error, "source", None)
    status = getattr(source, "status_code", None)
    if isinstance(status, int):
        return status
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def retry_after(headers: Any) -> int | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        seconds = int((moment - now_utc()).total_seconds())
    return max(0, min(seconds, MAX_RETRY_AFTER))


def outcome_of_error(error: BaseException, exchanges: Exchanges) -> Outcome:
    """What a failed exchange means for the delivery: try again later, or give up."""
    if isinstance(error, RequestNetworkException | httpx2.TransportError):
        cause = error.__cause__ or error
        return Outcome.failed(
            retry=True,
            request=exchanges.request,
            response=exchanges.response,
            error=f"{type(cause).__name__}: {cause}"[:500],
        )
    status = _status(error)
    source = getattr(error, "source", None)
    message = str(error)[:500] or type(error).__name__
    if status is None:
        # An answer that is not SCIM at all (an HTML page, a payload the models refuse).
        return Outcome.failed(
            retry=False,
            status=exchanges.status,
            request=exchanges.request,
            response=exchanges.response,
            error=message,
        )
    transient = status == 429 or status >= 500 or status == 408
    return Outcome.failed(
        retry=transient,
        status=status,
        request=exchanges.request,
        response=exchanges.response,
        error=message,
        retry_after=retry_after(getattr(source, "headers", None)) if transient else None,
    )


# ------------------------------------------------------------------ deliveries


def holds_vendor_seat(session: Session, *, user_id: int, vendor_id: int) -> bool:
    """Whether the person holds a seat of one of the vendor's products now."""
    return (
        session.scalar(
            sa.select(SeatAssignment.id)
            .join(Product, Product.id == SeatAssignment.product_id)
            .where(
                SeatAssignment.user_id == user_id,
                SeatAssignment.released_at.is_(None),
                Product.vendor_id == vendor_id,
            )
            .limit(1)
        )
        is not None
    )


def _person(session: Session, delivery: ScimDelivery) -> tuple[Person | None, PortalUser | None]:
    user = session.get(PortalUser, delivery.user_id) if delivery.user_id else None
    if user is not None:
        return Person.of(user), user
    return Person.from_payload(delivery.user_id, delivery.payload or {}), None


def _apply(
    session: Session, settings: ScimSettings, delivery: ScimDelivery, directory: Directory
) -> str:
    """Carry ``delivery`` out at the vendor; a short note of what was done."""
    event = str(delivery.event)
    delete = str(settings.on_release) == "delete"
    person, user = _person(session, delivery)
    product = session.get(Product, delivery.product_id) if delivery.product_id else None
    if event == "subscription.changed":
        return "nothing to do over SCIM"
    if person is None:
        return "the person is gone from the portal: nothing to do"
    if event == "seat.assigned":
        if user is None or not user.is_active:
            return "the person is no longer active in the portal: not created"
        record = directory.provision(person)
        if settings.group_push and product is not None and record.id:
            directory.join(product, record.id)
        return "provisioned"
    if event == "seat.released":
        if settings.group_push and product is not None:
            directory.leave(product, person)
        if (
            user is not None
            and user.is_active
            and holds_vendor_seat(session, user_id=user.id, vendor_id=settings.vendor_id)
        ):
            return "still holds another seat of this vendor: kept active"
        return "deleted" if directory.retire(person, delete=delete) and delete else "deactivated"
    if event == "user.deactivated":
        directory.retire(person, delete=delete)
        return "deleted" if delete else "deactivated"
    if event == "user.updated":
        return "updated" if directory.update(person) else "not held by the vendor"
    return f"unknown event {event!r}: nothing done"


def deliver(session: Session, settings: ScimSettings, delivery: ScimDelivery) -> Outcome:
    """One attempt at ``delivery`` over SCIM (the delivery engine's SCIM transport)."""
    if not settings.scim_base_url:
        return Outcome.failed(retry=False, error="the vendor has no SCIM base URL")
    try:
        directory = Directory.for_settings(settings)
    except (ValueError, httpx2.InvalidURL) as error:
        return Outcome.failed(retry=False, error=str(error)[:500])
    with directory:
        try:
            note = _apply(session, settings, delivery, directory)
        except (SCIMClientException, SCIMException, httpx2.HTTPError) as error:
            return outcome_of_error(error, directory.exchanges)
        exchanges = directory.exchanges
        # The log's answer starts with what the delivery came to, then the exchanges.
        return Outcome.ok(
            status=exchanges.status,
            request=exchanges.request,
            response=Exchanges.cut([f"({note})", *exchanges.responses]),
        )


@dataclass(frozen=True)
class ConnectionCheck:
    """What "test connection" found: ``ok``, and what the vendor's server says it does."""

    ok: bool
    status: int | None = None
    error: str | None = None
    patch: bool = False
    filter: bool = False
    bulk: bool = False
    authenticated: bool = False


def test_connection(settings: ScimSettings) -> ConnectionCheck:
    """Read the vendor's ``ServiceProviderConfig`` and list one user (so a wrong token
    shows: the configuration itself is public on many servers)."""
    if not settings.scim_base_url:
        return ConnectionCheck(ok=False, error="no SCIM base URL")
    try:
        directory = Directory.for_settings(settings)
    except (ValueError, httpx2.InvalidURL) as error:
        return ConnectionCheck(ok=False, error=str(error)[:500])
    with directory:
        try:
            config = directory.service_provider_config()
            directory.scim.query(User, query_parameters=search(count=1))
        except (SCIMClientException, SCIMException, httpx2.HTTPError) as error:
            outcome = outcome_of_error(error, directory.exchanges)
            return ConnectionCheck(ok=False, status=outcome.status, error=outcome.error)
        return ConnectionCheck(
            ok=True,
            status=directory.exchanges.status,
            patch=bool(config.patch and config.patch.supported),
            filter=bool(config.filter and config.filter.supported),
            bulk=bool(config.bulk and config.bulk.supported),
            authenticated=True,
        )
