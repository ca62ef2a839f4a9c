"""gunicorn settings for the portal (``gunicorn wsgi:app`` reads this file from here).

The benchmarks serve the portal and their bare baseline with these same settings.
Environment variables override them: ``WEB_CONCURRENCY`` (worker processes),
``GUNICORN_THREADS`` (threads per worker), ``PORTAL_BIND``.
"""

import os

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
# Python code holds the GIL, so processes are what use the cores; one per core and
# one more to keep a core busy while another worker waits for the database.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) + 1))
# gthread keeps HTTP connections alive (the sync worker closes each one); a few
# threads overlap one request's database wait with another's Python.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 2))
keepalive = 30
# A batch of 10,000 usage events is a few MB and well under a second; leave room.
timeout = 60
accesslog = None
