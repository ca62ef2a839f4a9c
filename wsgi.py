"""WSGI entry point: ``gunicorn wsgi:app``."""

from werkzeug.middleware.proxy_fix import ProxyFix

from portal import create_app

app = create_app()
# Behind one reverse proxy in production: trust its X-Forwarded-* for the client IP.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
