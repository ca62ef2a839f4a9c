"""A separate process that races for seats or pool capacity (used by test_concurrency).

Usage: python -m tests.seats.race_worker seats|subscribe <json args>
Prints one JSON line: {"ok": n, "refused": {code: n}}.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter


def main() -> None:
    from portal import create_app
    from portal.catalogue.models import Product
    from portal.db import bind_scope, db
    from portal.kernel.errors import DomainError
    from portal.kernel.scope import Scope
    from portal.seats import services
    from portal.seats.models import Subscription
    from portal.tenancy.models import Organisation
    from tests.conftest import SYSTEM

    mode, args = sys.argv[1], json.loads(sys.argv[2])
    app = create_app({"SQLALCHEMY_DATABASE_URI": args["database_url"]})
    ok = Counter()
    refused: Counter = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(len(args["jobs"]))

    def run(job) -> None:
        with app.app_context():
            bind_scope(db.session, Scope.council())  # the system actor's scope
            barrier.wait()
            try:
                if mode == "seats":
                    sub = db.session.get(Subscription, args["subscription_id"])
                    services.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=job)
                else:
                    services.subscription_create(
                        db.session,
                        actor=SYSTEM,
                        organisation=db.session.get(Organisation, job),
                        product=db.session.get(Product, args["product_id"]),
                        quantity=args["quantity"],
                    )
                db.session.commit()
                with lock:
                    ok["ok"] += 1
            except DomainError as error:
                db.session.rollback()
                with lock:
                    refused[error.code] += 1
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(job,)) for job in args["jobs"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        db.engine.dispose()
    print(json.dumps({"ok": ok["ok"], "refused": dict(refused)}))


if __name__ == "__main__":
    main()
