"""Signing people in and out of the web pages, and role checks for views.

The Flask session cookie holds only the random token of a server-side
:class:`~portal.identity.models.UserSession`. Flask-Login loads the user from
that token on every request, so revoking the row (sign-out, deactivation,
suspension, password reset) ends the session even for a copied cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, flash, g, redirect, request, session, url_for
from flask_login import LoginManager, current_user, login_user, logout_user

from portal.db import db_session
from portal.identity.models import User
from portal.identity.sign_in import session_revoke, session_start, session_user
from portal.kernel.actor import Actor, Role


class SignedInUser:
    """Flask-Login's view of a :class:`User` signed in through one session token."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, user: User, token: str) -> None:
        self.user = user
        self.token = token

    @property
    def is_active(self) -> bool:
        return self.user.is_active

    def get_id(self) -> str:
        return self.token

    def __getattr__(self, name: str) -> Any:
        return getattr(self.user, name)


def init_app(app: Flask, login_manager: LoginManager) -> None:
    """Wire Flask-Login to the server-side sessions."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = None  # the server-side session row is the protection

    @login_manager.user_loader
    def load_user(token: str) -> SignedInUser | None:
        user = session_user(db_session(), token)
        return SignedInUser(user, token) if user is not None else None


def client_ip() -> str | None:
    """The client's address: behind a proxy named in ``PORTAL_TRUSTED_PROXIES`` the one it
    forwarded for, otherwise the socket peer (``portal.ratelimit.TrustedProxies``)."""
    return request.remote_addr


def current_actor() -> Actor:
    """The signed-in person as an :class:`Actor` for services and the audit log."""
    if not current_user.is_authenticated:
        return Actor(label="anonymous", ip=client_ip())
    return Actor.for_user(current_user.user, client_ip())


def current_organisation() -> Any:
    """The signed-in person's own organisation; 403 for council staff."""
    org = current_user.organisation if current_user.is_authenticated else None
    if org is None:
        abort(403)
    return org


def sign_in(user: User) -> None:
    """Start a fresh session for ``user``: old session data is dropped (no fixation)."""
    session.clear()
    token = session_start(
        db_session(), user=user, ip=client_ip(), user_agent=request.headers.get("User-Agent")
    )
    session.permanent = True
    login_user(SignedInUser(user, token), remember=False, fresh=True)


def sign_out() -> None:
    """End the current session server-side and clear the cookie."""
    if current_user.is_authenticated:
        session_revoke(db_session(), current_user.token)
    logout_user()
    session.clear()


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not target:
        return default
    target = target.strip()
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def role_required(*roles: Role) -> Callable:
    """Let the view run only for signed-in users with one of ``roles``."""
    allowed = {Role(r).value for r in roles}

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                flash("Please sign in to see that page.", "info")
                # Only a page can be gone back to; a form's POST address would answer 405.
                back = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("auth.login", next=back))
            if current_user.role not in allowed:
                abort(403)
            g.actor = current_actor()
            return view(*args, **kwargs)

        return wrapper

    return decorator


def home_for(user: Any) -> str:
    """Where a person lands after signing in."""
    role = Role(user.role)
    if role == Role.COUNCIL_ADMIN:
        return url_for("tenancy.council_dashboard")
    if role == Role.FINANCE:
        return url_for("tenancy.council_dashboard")
    if role == Role.ORG_ADMIN:
        return url_for("tenancy.org_dashboard")
    return url_for("web.my_software")
