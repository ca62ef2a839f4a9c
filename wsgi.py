"""WSGI entry point: ``gunicorn wsgi:app``.

Behind a reverse proxy, name it in ``PORTAL_TRUSTED_PROXIES``: only then are its
``X-Forwarded-For`` and ``X-Forwarded-Proto`` believed (``portal.ratelimit``).
"""

from portal import create_app

app = create_app()
