"""The shared-use software licensing portal.

:func:`create_app` builds the Flask application: configuration from the
environment, the database, extensions, blueprints and error handlers. It imports
what it wires inside the function: this file runs whenever any ``portal.*``
module is imported, so it must not import the domains itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask_openapi3 import Info, OpenAPI

from portal.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> OpenAPI:
    """Create and configure an instance of the portal.

    The app is flask-openapi3's ``OpenAPI`` (a ``Flask`` subclass), so the API's
    request and response models generate the OpenAPI document; its own docs
    pages are off (``portal.api`` serves the document and a vendored docs page).
    """
    from portal.api.framework import SECURITY_SCHEMES, validation_error_response
    from portal.api.schemas import Problem

    app = OpenAPI(
        __name__,
        info=Info(title="Shared-use software licensing portal API", version="1"),
        security_schemes=SECURITY_SCHEMES,
        doc_ui=False,
        validation_error_status=422,
        validation_error_model=Problem,
        validation_error_callback=validation_error_response,
        instance_path=os.environ.get("PORTAL_INSTANCE_PATH") or str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.update(test_config)
    if app.config["PORTAL_ENV"] == "test":  # the suite run from another instant (tests/conftest.py)
        from portal.kernel import clock

        clock.offset_from_environment()
    from portal import inputs

    inputs.init_app(app)  # before any route: the bounded <int:…> converter, the input guard

    from portal import models  # noqa: F401  (registers every model on the metadata)
    from portal.db import db
    from portal.extensions import csrf, login_manager, migrate

    db.init_app(app)
    # Signal receivers connect on import (portal.signals): higher domains reacting to lower ones.
    from portal.billing import overdue  # noqa: F401  (refuses new subscriptions of late payers)

    # Suppliers' incidents and standing tell their seat holders (notifications.seat_holders job).
    from portal.notifications import events as notification_events  # noqa: F401
    from portal.seats import services  # noqa: F401  (waitlist, capacity check, deactivated seats)

    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    from portal import ratelimit

    ratelimit.init_app(app)  # the limiter, token limits, trusted proxies
    from portal.identity import auth

    auth.init_app(app, login_manager)

    from portal import security

    security.init_app(app)
    from portal import i18n
    from portal.errors import register_error_handlers
    from portal.web import register_blueprints, register_template_helpers

    i18n.init_app(app)  # Flask-Babel: the reader's language, locale formats (filters)
    register_error_handlers(app)
    register_template_helpers(app)
    register_blueprints(app)

    from portal import api, observability, payments

    # Request ids, latency and the log line around Flask (the fast path observes its own).
    observability.init_app(app)
    # The API's entitlement fast path counts in the token's rate limit (rate limits sit above it).
    api.init_app(app, token_limit=ratelimit.fast_path_allows)
    payments.init_app(app)

    # Jobs are declared where they belong; importing their modules registers them.
    from portal import jobs
    from portal.billing import jobs as billing_jobs  # noqa: F401  (billing.invoice_run)
    from portal.billing import reminders  # noqa: F401  (billing.overdue_reminders, scheduled)
    from portal.mail import services as mail_jobs  # noqa: F401  (mail.send)
    from portal.metering import partitions as usage_partitions  # noqa: F401  (scheduled)
    from portal.metering import prompts  # noqa: F401  (metering.idle_seat_prompts, scheduled)
    from portal.notifications import (
        digest,  # noqa: F401  (notifications.daily_digest, scheduled)
        retention,  # noqa: F401  (notifications.sweep, scheduled)
    )
    from portal.payments import jobs as payment_jobs  # noqa: F401  (payments.collect)
    from portal.procurement import forecast_jobs  # noqa: F401  (procurement.pool_reminders)

    # The provisioning outbox's receivers, provisioning.deliver and provisioning.sweep.
    from portal.provisioning import jobs as provisioning_jobs  # noqa: F401
    from portal.provisioning import reconcile  # noqa: F401  (provisioning.reconcile, scheduled)
    from portal.seats import counts as seat_counts  # noqa: F401  (seats.fold_counts, scheduled)
    from portal.suppliers import (
        compliance,  # noqa: F401  (suppliers.compliance_expiry)
        statuspage,  # noqa: F401  (suppliers.poll_status, scheduled)
    )

    jobs.init_app(app)  # the queue (Celery), `portal worker`, `portal jobs tick`
    from portal.cli import register_commands

    register_commands(app)
    return app
