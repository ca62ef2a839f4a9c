""" "Send again" for a recorded mail message, from whichever page shows its state.

Pages that send mail (people's invitations, an invoice) show the message's true
state with :file:`templates/_mail_state.html` and post here; the service decides
who may send what again (``portal.mail.services.RESEND_ACTIONS``) and audits it.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for

from portal.db import db_session
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _
from portal.kernel.scope import scope_of
from portal.mail import mail_resend
from portal.mail.selectors import message_in_scope

bp = Blueprint("mail", __name__)


@bp.post("/mail/<int:message_id>/resend")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE, Role.ORG_ADMIN)
def resend(message_id: int):
    """Queue a message again and go back to the page it was shown on."""
    back = auth.safe_next(request.form.get("next"), url_for("web.home"))
    actor = auth.current_actor()
    message = message_in_scope(db_session(), scope=scope_of(actor), message_id=message_id)
    if not ConfirmForm().validate_on_submit():
        flash(_("The form expired; nothing was sent. Try again."), "error")
        return redirect(back)
    try:
        mail_resend(db_session(), actor=actor, message=message)
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        flash(
            _(
                "The message to %(recipient)s is queued to be sent again.",
                recipient=message.recipient,
            ),
            "success",
        )
    return redirect(back)
