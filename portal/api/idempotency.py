"""``Idempotency-Key`` on creating POSTs: the first response again for a retry.

The first successful (2xx) response to a key is stored, per token, in the same
transaction as the change it reports, so either both are committed or neither.
A retry with the same key and the same request (method, path, JSON body) gets
that response again, with ``Idempotent-Replayed: true``; the same key with a
different request gets a 409 ``idempotency_key_reused`` problem. Failed
requests are not stored: they changed nothing, so a retry simply runs again.

Two identical requests that race both miss the stored response at first. The
unique constraint on (token, key) lets only one commit; the other fails on that
constraint or on a rule the winner's change now breaks (a taken slug, say),
rolls back, finds the winner's stored response and replays it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from flask import Response, jsonify, request
from sqlalchemy.exc import IntegrityError

from portal.api import selectors, services
from portal.api.auth import current_token
from portal.api.models import IdempotentRequest
from portal.db import db_session
from portal.errors import problem
from portal.kernel.errors import DomainError

HEADER = "Idempotency-Key"


def fingerprint() -> str:
    """A digest of what makes two requests the same: method, path and JSON body."""
    body = request.get_json(silent=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = f"{request.method} {request.path}\n{canonical}"
    return hashlib.sha256(text.encode()).hexdigest()


def _replay(stored: IdempotentRequest, request_hash: str) -> Response:
    if stored.request_hash != request_hash:
        return problem(
            409,
            "Idempotency key reused",
            f"The key “{stored.key}” was already used for a different request "
            f"({stored.method} {stored.path}); use a new key for a new request.",
            code="idempotency_key_reused",
        )
    response = jsonify(stored.response_body)
    response.status_code = stored.response_status
    response.headers["Idempotent-Replayed"] = "true"
    return response


def run(view: Callable[[], Response]) -> Response:
    """Run a creating view under the request's ``Idempotency-Key`` (if any) and commit."""
    key = request.headers.get(HEADER)
    if key is None:
        response = view()
        db_session().commit()
        return response
    token = current_token()
    request_hash = fingerprint()
    stored = selectors.idempotent_request_find(db_session(), token_id=token.id, key=key)
    if stored is not None:
        return _replay(stored, request_hash)
    try:
        response = view()
        if 200 <= response.status_code < 300:
            services.idempotent_request_store(
                db_session(),
                token=token,
                key=key,
                method=request.method,
                path=request.path,
                request_hash=request_hash,
                status=response.status_code,
                body=response.get_json(),
            )
        db_session().commit()
    except (DomainError, IntegrityError):
        db_session().rollback()
        stored = selectors.idempotent_request_find(db_session(), token_id=token.id, key=key)
        if stored is None:
            raise
        return _replay(stored, request_hash)
    return response
