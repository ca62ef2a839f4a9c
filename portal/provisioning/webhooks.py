"""Signed webhooks in the Standard Webhooks format (https://www.standardwebhooks.com).

Each delivery is one ``POST`` of its JSON payload (``{"type", "timestamp", "data"}``) to
the vendor's webhook URL with three headers:

* ``webhook-id``: the delivery's ``message_id`` (``msg_…``), the same on every attempt, so
  a receiver that saw it already can answer 2xx and do nothing (at-least-once delivery);
* ``webhook-timestamp``: the attempt's time, in Unix seconds;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, signed
  with the vendor's secret (``whsec_`` + base64 of 32 random bytes); for a while after a
  rotation (:data:`ROTATION_OVERLAP`) signed with the previous secret too, the two
  signatures separated by a space, so a receiver holding either verifies.

Signing is the ``standardwebhooks`` library's (``Webhook.sign``). A 2xx answer delivers;
a timeout, a refused connection, 408, 429 or a 5xx is tried again later (not before its
``Retry-After``, if it gave one); any other answer
(a 3xx is not followed, a 4xx) fails the delivery at once: the same request would get it
again.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets

import requests
from standardwebhooks.webhooks import Webhook

from portal.kernel.clock import now_utc
from portal.provisioning.models import Delivery, VendorProvisioning
from portal.provisioning.scim_client import retry_after
from portal.provisioning.transport import Outcome

#: How long the previous secret still signs after a rotation.
ROTATION_OVERLAP_HOURS = 24
#: Seconds to connect, and to wait for the answer.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
#: What the log keeps of a request or an answer.
LOG_LIMIT = 4000
#: Statuses worth another try.
RETRY_STATUSES = frozenset({408, 425, 429})
USER_AGENT = "licensing-portal-webhooks/1"


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_message_id() -> str:
    """A delivery's ``webhook-id``: unique, URL-safe, fixed for all its attempts."""
    return "msg_" + secrets.token_urlsafe(24)


def body_of(delivery: Delivery) -> str:
    """The exact bytes (as text) that are signed and sent."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def signature(secrets_: list[str], *, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,…`` per secret, space-separated."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=moment, data=body) for secret in secrets_
    )


def _cut(text: str) -> str:
    return text if len(text) <= LOG_LIMIT else text[:LOG_LIMIT] + "…"


def _request_log(url: str, headers: dict[str, str], body: str) -> str:
    shown = dict(headers)
    # Not a secret, but nothing a reader of the log needs: kept out of it.
    shown["webhook-signature"] = " ".join(
        part.split(",", 1)[0] + ",…" for part in headers["webhook-signature"].split(" ")
    )
    lines = [f"POST {url}", *(f"{k}: {v}" for k, v in shown.items()), "", body]
    return _cut("\n".join(lines))


def send(settings: VendorProvisioning, delivery: Delivery) -> Outcome:
    """Send one delivery to the vendor's webhook URL; what came of it."""
    url = settings.webhook_url
    keys = settings.signing_secrets()
    if not url or not keys:
        return Outcome.failed(retry=False, error="The vendor has no webhook URL or secret.")
    body = body_of(delivery)
    timestamp = int(now_utc().timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(
            keys, message_id=delivery.message_id, timestamp=timestamp, body=body
        ),
    }
    request_log = _request_log(url, headers, body)
    try:
        answer = requests.post(
            url,
            data=body.encode("utf-8"),
            headers=headers,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            allow_redirects=False,
        )
    except requests.Timeout as error:
        return Outcome.failed(retry=True, request=request_log, error=_describe(error, "timeout"))
    except requests.RequestException as error:
        return Outcome.failed(
            retry=True, request=request_log, error=_describe(error, "connection failed")
        )
    response_log = _cut(f"HTTP {answer.status_code}\n\n{answer.text}")
    if 200 <= answer.status_code < 300:
        return Outcome.ok(status=answer.status_code, request=request_log, response=response_log)
    retry = answer.status_code >= 500 or answer.status_code in RETRY_STATUSES
    return Outcome.failed(
        retry=retry,
        status=answer.status_code,
        request=request_log,
        response=response_log,
        error=f"HTTP {answer.status_code}",
        retry_after=retry_after(answer.headers) if retry else None,
    )


def _describe(error: BaseException, kind: str) -> str:
    first = str(error).strip().splitlines()
    return f"{kind}: {type(error).__name__}" + (f": {first[0][:300]}" if first else "")
