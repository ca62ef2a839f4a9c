"""The ``portal`` command line (``flask --app portal`` gives the same commands).

Every command runs in one database transaction that commits at the end, and
exits non-zero with a one-line reason when its input is bad.
"""

from __future__ import annotations

import getpass
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext

from portal.audit.services import Actor
from portal.errors import DomainError


def _fail(error: DomainError) -> click.ClickException:
    fields = "; ".join(f"{k}: {' '.join(v)}" for k, v in (error.errors or {}).items())
    return click.ClickException(f"{error.detail} {fields}".strip())


@click.command("create-admin")
@click.option("--email", required=True, help="The council admin's email address.")
@click.option("--password", help="The password; asked for when not given.")
@click.option("--name", default="", help="The admin's name.")
@with_appcontext
def create_admin(email: str, password: str | None, name: str) -> None:
    """Create a council admin account."""
    from portal.db import db
    from portal.identity.models import Role
    from portal.identity.services import user_create

    if password is None:
        if not sys.stdin.isatty():
            raise click.ClickException("Give --password, or run in a terminal to be asked for one.")
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            raise click.ClickException("The two passwords differ.")
    try:
        user = user_create(
            db.session,
            actor=Actor.system("cli"),
            email=email,
            name=name,
            role=Role.COUNCIL_ADMIN,
            password=password,
        )
        db.session.commit()
    except DomainError as error:
        db.session.rollback()
        raise _fail(error) from error
    click.echo(f"Council admin {user.email} created.")


@click.command("demo")
@with_appcontext
def demo() -> None:
    """Load a demo council: organisations, users and (as the portal grows) more."""
    from portal.db import db
    from portal.demo import load_demo

    try:
        summary = load_demo(db.session)
        db.session.commit()
    except DomainError as error:
        db.session.rollback()
        raise _fail(error) from error
    for line in summary:
        click.echo(line)


def register_commands(app: Flask) -> None:
    """Attach the portal's commands to the app's CLI."""
    for command in (create_admin, demo):
        app.cli.add_command(command)


def _create_app():
    from portal import create_app

    return create_app()


def main() -> None:
    """Entry point of the ``portal`` console script."""
    cli = FlaskGroup(
        create_app=_create_app,
        add_default_commands=True,
        help="The shared-use software licensing portal.",
    )
    cli.main(prog_name="portal")
