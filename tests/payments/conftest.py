"""Stripe for the payment tests: localstripe, started in-process, behind a small front.

``fake_stripe`` runs localstripe's aiohttp app (``localstripe.server.app``) on
127.0.0.1 and a free port, in an event loop on a background thread, with its
store's pickle dump disabled (its CLI would bind every interface and write a
fixed file in /tmp). If localstripe cannot be imported or started, every test
here errors: nothing is skipped.

The portal talks to localstripe through a front on another port, which adds
what localstripe lacks and the tests need:

* **Idempotency keys, as Stripe keeps them**: localstripe ignores the
  ``Idempotency-Key`` header, so the front saves the first answer to a key and
  replays it for the same key (and refuses the key with other parameters, as
  Stripe does). A client that sends a new key for a retry gets a second charge
  here, as it would at Stripe.
* **Faults**: ``stall("POST", "/v1/payment_intents")`` lets the next such
  request through to localstripe, then answers only after the client's
  timeout: the call succeeded, and the caller does not know it.
* **Checkout** (localstripe has none): answered with bodies from Stripe's API
  reference (``stripe_docs/``).
* **Captured webhooks**: ``capture_webhooks()`` registers the front's
  ``/capture`` with localstripe instead of the portal, so a test can deliver
  localstripe's signed deliveries itself: many times, at once, out of order.

By default each test's localstripe sends its (signed) webhooks to the portal,
served by a live server thread.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from portal.db import db
from tests.billing.conftest import billed, last_month  # noqa: F401  (fixture re-export)
from tests.conftest import SYSTEM
from tests.support import quick_user

API_KEY = "sk_test_portal_payments"
WEBHOOK_SECRET = "whsec_portal_payments_test"
DOCS = Path(__file__).resolve().parent / "stripe_docs"


# ------------------------------------------------------------------ localstripe and its front


class FakeStripe:
    """localstripe in a background event loop, and the front described above."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # what reached the front
        self.captured: list[dict[str, Any]] = []  # webhook deliveries sent to /capture
        self.checkout_sessions: dict[str, dict[str, Any]] = {}
        self._idempotent: dict[str, tuple[str, int, bytes]] = {}
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._faults: list[dict[str, Any]] = []
        self._deliveries: set[asyncio.Future] = set()
        self.stall_seconds = 3.0

    # -------------------------------------------------------------- starting and stopping

    def start(self) -> None:
        from localstripe import resources, server, webhooks

        self._resources, self._webhooks = resources, webhooks
        # The store pickles itself to /tmp/localstripe.pickle after every change; not here.
        resources.store.dump_to_disk = lambda: None
        resources.store.clear()

        def schedule_webhook(event: Any) -> None:  # localstripe's own, with the task kept
            task = asyncio.ensure_future(webhooks._send_webhook(event))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

        resources.schedule_webhook = schedule_webhook

        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._serve(server.app))
            except BaseException as error:  # reported to the test below
                failure.append(error)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="localstripe", daemon=True)
        self.thread.start()
        if not ready.wait(20) or failure:
            raise RuntimeError(f"localstripe did not start: {failure}")

    async def _serve(self, localstripe_app: Any) -> None:
        from aiohttp import ClientSession, web

        self._runners = []
        runner = web.AppRunner(localstripe_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        self.localstripe_url = f"http://{host}:{port}"

        front = web.Application()
        front.router.add_post("/capture", self._capture)
        front.router.add_post("/v1/checkout/sessions", self._checkout_create)
        front.router.add_get("/v1/checkout/sessions/{id}", self._checkout_retrieve)
        front.router.add_route("*", "/{tail:.*}", self._forward)
        front_runner = web.AppRunner(front, access_log=None)
        await front_runner.setup()
        await web.TCPSite(front_runner, "127.0.0.1", 0).start()
        self._runners.append(front_runner)
        host, port = front_runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._client = ClientSession()

    def stop(self) -> None:
        async def close() -> None:
            await self._client.close()
            for runner in reversed(self._runners):
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def reset(self) -> None:
        """Empty localstripe (``DELETE /_config/data``), its webhooks and the front's state."""
        self.drain()
        self._webhooks._webhooks.clear()  # localstripe has no call to remove a webhook
        requests.delete(f"{self.localstripe_url}/_config/data", timeout=10).raise_for_status()
        with self.lock:
            self.requests.clear()
            self.captured.clear()
            self.checkout_sessions.clear()
            self._idempotent.clear()
            self._faults.clear()

    def drain(self, timeout: float = 30) -> None:
        """Wait until localstripe has sent every webhook it scheduled (each waits 1 s first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:

            async def pending() -> int:
                waiting = list(self._deliveries)
                if waiting:
                    await asyncio.wait(waiting, timeout=5)
                return len(self._deliveries)

            if asyncio.run_coroutine_threadsafe(pending(), self.loop).result(timeout) == 0:
                return
        raise AssertionError("localstripe still has webhooks to send")

    # -------------------------------------------------------------- test controls

    def webhook_to(self, url: str, name: str = "portal", secret: str = WEBHOOK_SECRET) -> None:
        """Register a webhook endpoint with localstripe (``POST /_config/webhooks/<name>``)."""
        response = requests.post(
            f"{self.localstripe_url}/_config/webhooks/{name}",
            data={"url": url, "secret": secret},
            timeout=10,
        )
        response.raise_for_status()

    def capture_webhooks(self) -> None:
        """Send localstripe's deliveries to the front's /capture, not to the portal."""
        self._webhooks._webhooks.clear()
        self.webhook_to(f"{self.url}/capture", name="capture")

    def stall(self, method: str, path: str, times: int = 1) -> None:
        """Let the next ``times`` matching requests succeed upstream, then answer too late."""
        with self.lock:
            self._faults.append({"method": method, "path": path, "times": times})

    def deliveries(self, event_type: str) -> list[dict[str, Any]]:
        """Captured deliveries of one event type: {'body': bytes, 'signature': str, 'event'}."""
        self.drain()
        with self.lock:
            return [d for d in self.captured if d["event"]["type"] == event_type]

    def objects(self, kind: str) -> list[Any]:
        """localstripe's stored objects of one kind (``payment_intent``, ``charge`` …)."""
        return [o for k, o in list(self._resources.store.items()) if k.startswith(kind + ":")]

    def sent(self, method: str, path: str) -> list[dict[str, Any]]:
        """Requests that reached the front (the portal's calls), in order."""
        with self.lock:
            return [r for r in self.requests if r["method"] == method and r["path"] == path]

    # -------------------------------------------------------------- the front's handlers

    async def _capture(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        with self.lock:
            self.captured.append(
                {
                    "body": body,
                    "signature": request.headers.get("Stripe-Signature"),
                    "event": json.loads(body),
                }
            )
        return web.Response(text="ok")

    def _take_fault(self, method: str, path: str) -> bool:
        with self.lock:
            for fault in self._faults:
                if fault["method"] == method and fault["path"] == path and fault["times"] > 0:
                    fault["times"] -= 1
                    return True
        return False

    async def _forward(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        key = request.headers.get("Idempotency-Key")
        with self.lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "key": key,
                    "body": body,
                    "version": request.headers.get("Stripe-Version"),
                }
            )
        stall = self._take_fault(request.method, request.path)
        if key and request.method == "POST":
            fingerprint = hashlib.sha256(request.path.encode() + b"\0" + body).hexdigest()
            lock = self._key_locks.setdefault(key, asyncio.Lock())
            async with lock:
                saved = self._idempotent.get(key)
                if saved is not None and saved[0] != fingerprint:
                    status, payload = 400, _idempotency_error(key)
                    headers = {}
                elif saved is not None:
                    _, status, payload = saved
                    headers = {"Idempotent-Replayed": "true"}
                else:
                    status, payload = await self._upstream(request, body)
                    if status < 500:  # Stripe does not save 5xx answers
                        self._idempotent[key] = (fingerprint, status, payload)
                    headers = {}
        else:
            status, payload = await self._upstream(request, body)
            headers = {}
        if stall:
            await asyncio.sleep(self.stall_seconds)  # the client gave up before this
        return web.Response(
            status=status, body=payload, content_type="application/json", headers=headers
        )

    async def _upstream(self, request: Any, body: bytes) -> tuple[int, bytes]:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "stripe-version")
        }
        async with self._client.request(
            request.method,
            self.localstripe_url + request.path_qs,
            data=body or None,
            headers=headers,
        ) as upstream:
            return upstream.status, await upstream.read()

    async def _checkout_create(self, request: Any) -> Any:
        """``POST /v1/checkout/sessions``, answered with the body from Stripe's API reference."""
        from aiohttp import web

        form = await request.post()
        with self.lock:
            self.requests.append(
                {"method": "POST", "path": request.path, "key": None, "form": dict(form)}
            )
        session = json.loads((DOCS / "checkout_session.json").read_text())
        session_id = f"cs_test_{len(self.checkout_sessions) + 1:04d}portal"
        session.update(
            id=session_id,
            customer=form.get("customer"),
            currency=form.get("currency"),
            success_url=form.get("success_url"),
            cancel_url=form.get("cancel_url"),
            url=f"https://checkout.stripe.com/c/pay/{session_id}",
            setup_intent=None,
        )
        with self.lock:
            self.checkout_sessions[session_id] = session
        return web.json_response(session)

    async def _checkout_retrieve(self, request: Any) -> Any:
        """``GET /v1/checkout/sessions/{id}?expand[]=setup_intent``, from the reference's bodies."""
        from aiohttp import web

        with self.lock:
            self.requests.append(
                {"method": "GET", "path": request.path, "key": None, "query": request.query_string}
            )
            session = copy.deepcopy(self.checkout_sessions.get(request.match_info["id"]))
        if session is None:
            return web.json_response(
                {
                    "error": {
                        "code": "resource_missing",
                        "message": f"No such checkout.session: '{request.match_info['id']}'",
                        "param": "session",
                        "type": "invalid_request_error",
                    }
                },
                status=404,
            )
        if "expand[0]" in request.query or "expand[]" in request.query:
            setup = json.loads((DOCS / "setup_intent.json").read_text())
            setup.update(
                customer=session["customer"], payment_method=session.get("_payment_method")
            )
            session["setup_intent"] = setup
        session.pop("_payment_method", None)
        return web.json_response(session)

    def checkout_complete(self, session_id: str, payment_method: str) -> None:
        """What Stripe does when the admin adds ``payment_method`` on the Checkout page."""
        with self.lock:
            self.checkout_sessions[session_id].update(
                status="complete", _payment_method=payment_method
            )


def _idempotency_error(key: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": "Keys for idempotent requests can only be used with the same "
                f"parameters they were first used with. Try using a key other than '{key}'.",
                "type": "idempotency_error",
            }
        }
    ).encode()


@pytest.fixture(scope="session")
def fake_stripe() -> Iterator[FakeStripe]:
    """localstripe in-process behind the front; a failure to start errors every test."""
    server = FakeStripe()
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------------ Stripe, pointed at localstripe


@pytest.fixture
def stripe_api(app, fake_stripe: FakeStripe, live_server: str) -> Iterator[FakeStripe]:
    """A fresh localstripe whose webhooks go to the portal, and the portal pointed at it."""
    fake_stripe.reset()
    fake_stripe.webhook_to(f"{live_server}/webhooks/stripe")
    keys = (
        "PORTAL_STRIPE_API_KEY",
        "PORTAL_STRIPE_API_BASE",
        "PORTAL_STRIPE_WEBHOOK_SECRET",
        "PORTAL_STRIPE_TIMEOUT_SECONDS",
        "PORTAL_STRIPE_MAX_NETWORK_RETRIES",
    )
    before = {k: app.config.get(k) for k in keys}
    app.config.update(
        PORTAL_STRIPE_API_KEY=API_KEY,
        PORTAL_STRIPE_API_BASE=fake_stripe.url,
        PORTAL_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        PORTAL_STRIPE_TIMEOUT_SECONDS=10,
        PORTAL_STRIPE_MAX_NETWORK_RETRIES=0,
    )
    fake_stripe.live_server = live_server
    yield fake_stripe
    # Nothing this test set off may reach the next one's portal.
    fake_stripe.drain()
    fake_stripe._webhooks._webhooks.clear()
    app.config.update(before)


# ------------------------------------------------------------------ an organisation paying by card


@pytest.fixture
def card_org(app, billed, stripe_api):  # noqa: F811
    """acme from tests/billing (10 seats since last month) billed through Stripe, with an admin."""
    from portal.tenancy.models import Organisation

    org = billed["org"]
    with app.app_context():
        db.session.get(Organisation, org.id).billing_provider = "stripe"
        db.session.commit()
    admin = quick_user(app, "org_admin", org)
    return {**billed, "admin": admin}


def save_card(app, org, test_method: str = "pm_card_visa") -> str:
    """Save one of Stripe's test cards for ``org`` through the service; returns its id."""
    from portal.payments.accounts import current_gateway, stripe_test_card_add
    from portal.tenancy.models import Organisation

    with app.app_context():
        account = stripe_test_card_add(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            gateway=current_gateway(),
            test_method=test_method,
        )
        db.session.commit()
        return account.default_payment_method_id


def finalise(app, org, period: str | None = None) -> int:
    """Draft and finalise ``org``'s invoice for ``period`` (last month); returns its id.

    Finalising schedules the collection, and the first attempt runs right after
    the commit, as in production.
    """
    from portal.billing import drafting, lifecycle
    from portal.tenancy.models import Organisation

    period = period or last_month()[0]
    with app.app_context():
        invoice, _ = drafting.invoice_draft_refresh(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            period=period,
        )
        lifecycle.invoice_finalize(db.session, actor=SYSTEM, invoice=invoice)
        invoice_id = invoice.id
        db.session.commit()
        db.session.remove()
        return invoice_id


def collect(app) -> dict[str, int]:
    """Run the job cron runs (``portal payments collect``) once."""
    from portal.payments.accounts import current_gateway
    from portal.payments.jobs import collect_due

    with app.app_context():
        counts = collect_due(db.session, gateway=current_gateway())
        db.session.remove()
        return counts


def make_due(app, invoice_id: int) -> None:
    """Time passes: the collection's next attempt is due now."""
    from portal.kernel.clock import now_utc
    from portal.payments.models import PaymentCollection

    with app.app_context():
        db.session.execute(
            sa.update(PaymentCollection)
            .where(PaymentCollection.invoice_id == invoice_id)
            .values(next_attempt_at=now_utc() - dt.timedelta(seconds=1))
        )
        db.session.commit()


def state(app, invoice_id: int) -> dict[str, Any]:
    """Everything the payment of one invoice decided, to compare final states."""
    from portal.billing.models import Invoice, Payment
    from portal.payments.models import PaymentCollection, StripeEvent

    with app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        collection = db.session.scalar(
            sa.select(PaymentCollection).where(PaymentCollection.invoice_id == invoice_id)
        )
        payments = db.session.execute(
            sa.select(Payment.external_id, Payment.amount, Payment.method)
            .where(Payment.invoice_id == invoice_id)
            .order_by(Payment.id)
        ).all()
        events = db.session.execute(
            sa.select(StripeEvent.type, StripeEvent.object_id, StripeEvent.outcome)
            .where(StripeEvent.type.like("payment_intent.%"))
            .order_by(StripeEvent.type, StripeEvent.object_id)
        ).all()
        result = {
            "invoice": (invoice.status, invoice.amount_paid, invoice.amount_due),
            "payments": [tuple(p) for p in payments],
            "collection": None
            if collection is None
            else {
                "status": collection.status,
                "attempts": collection.attempts,
                "next_attempt_at": collection.next_attempt_at,
                "payment_intent_id": collection.payment_intent_id,
                "failure_code": collection.failure_code,
            },
            "events": sorted((e.type, e.object_id) for e in events if e.outcome is not None),
        }
        db.session.remove()
        return result


def deliver(base_url: str, delivery: dict[str, Any]) -> requests.Response:
    """POST one captured webhook delivery to the portal, byte for byte."""
    return requests.post(
        f"{base_url}/webhooks/stripe",
        data=delivery["body"],
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": delivery["signature"],
        },
        timeout=30,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 15) -> None:
    """Poll until ``predicate()`` holds (webhooks arrive a second after their event)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
