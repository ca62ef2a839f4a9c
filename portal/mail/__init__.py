"""Outgoing mail: every message recorded (``mail_messages``) and sent by a job.

Services build a message (:func:`build_message`) and call :func:`mail_queue`
with the session they write in: the message and its ``mail.send`` job are
committed with the change (a rolled-back change mails nobody), and a worker sends
it, retrying with backoff while the SMTP server does not answer. Pages show each
message's true state (queued, sent, failed with the reason) and offer "Send
again" (:func:`mail_resend`). See :mod:`portal.mail.services`.
"""

from __future__ import annotations

from portal.mail.services import mail_queue, mail_resend
from portal.mail.transport import build_message, deliver, outbox_messages

__all__ = ["build_message", "deliver", "mail_queue", "mail_resend", "outbox_messages"]
