"""Membership end to end in a real browser: apply, approve, invite, accept, sign in and out.

Each test drives the pages with clicks and typing; only the first council
admin is created directly (``make_user``), as ``portal create-admin`` would.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.db import db
from portal.identity.models import Invitation, User
from portal.tenancy.models import Organisation
from tests.browser.conftest import link_in, pass_second_step
from tests.conftest import totp_code

PASSWORD = "a long enough passphrase"


def _main(page: Page):
    return page.get_by_role("main")


def _nav(page: Page):
    return page.get_by_role("navigation", name="Main")


def sign_in(page: Page, email: str, password: str) -> None:
    """Open the sign-in page from the header and sign in with email and password."""
    _nav(page).get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    _main(page).get_by_label("Email").fill(email)
    _main(page).get_by_label("Password").fill(password)
    _main(page).get_by_role("button", name="Sign in").click()
    pass_second_step(page, email)


def sign_out(page: Page) -> None:
    _nav(page).get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    expect(_nav(page).get_by_role("button", name="Sign in")).to_be_visible()
    expect(_nav(page).get_by_role("button", name="Sign out")).to_have_count(0)


def fill_application(page: Page, **overrides: str) -> dict[str, str]:
    """Fill the membership form (the page must be open) and submit it."""
    values = {
        "Legal name": "Brightwater Logistics GmbH",
        "Short name for links": "brightwater",
        "Tax id": "DE123456789",
        "Billing email": "billing@brightwater.example",
        "Your name": "Bea Bright",
        "Your work email": "bea@brightwater.example",
        "Anything the council should know": "About 40 people need office software.",
    }
    values.update(overrides)
    form = _main(page)
    for label, value in values.items():
        form.get_by_label(label, exact=True).fill(value)
    form.get_by_label("Country").select_option("DE")
    form.get_by_label("Billing currency").select_option("EUR")
    form.get_by_role("button", name="Apply for membership").click()
    return values


def _count(app, model) -> int:
    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).select_from(model))
        db.session.remove()
        return count


# ------------------------------------------------------------------ the whole flow


def test_application_to_member_sign_in(
    app, page: Page, new_context, live_server, make_user, mail_to, screenshot
):
    council_admin = make_user("council_admin", password=PASSWORD)

    # A company applies on the public page.
    page.goto("/")
    screenshot(page, "01-home")
    _nav(page).get_by_role("link", name="Apply for membership").click()
    expect(page).to_have_url(re.compile(r"/apply$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Apply for membership")
    application = fill_application(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, your application is in")
    expect(_main(page)).to_contain_text("bea@brightwater.example")
    screenshot(page, "02-applied")

    # A council admin signs in and finds the application waiting.
    sign_in(page, council_admin.email, PASSWORD)
    expect(page).to_have_url(re.compile(r"/council$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Council dashboard")
    pending_table = _main(page).get_by_role("table")
    expect(pending_table).to_contain_text(application["Legal name"])
    expect(pending_table).to_contain_text("Bea Bright <bea@brightwater.example>")
    screenshot(page, "03-council-dashboard")

    # ... and in the organisation list, filtered by status.
    _nav(page).get_by_role("link", name="Organisations").click()
    _main(page).get_by_label("Status").select_option("active")
    _main(page).get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=active"))
    expect(_main(page).get_by_role("table")).to_contain_text("No organisations match.")
    _main(page).get_by_label("Status").select_option("pending")
    _main(page).get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=pending"))
    row = _main(page).get_by_role("row").filter(has_text=application["Legal name"])
    expect(row).to_contain_text("pending")
    screenshot(page, "04-organisations-pending")
    row.get_by_role("link", name=application["Legal name"]).click()

    # The organisation page shows the application; the admin approves it.
    expect(page).to_have_url(re.compile(r"/council/organisations/brightwater$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(application["Legal name"])
    expect(page.get_by_role("heading", level=1)).to_contain_text("pending")
    expect(_main(page)).to_contain_text("About 40 people need office software.")
    screenshot(page, "05-organisation-pending")
    _main(page).get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text(
        f"{application['Legal name']} is now active. "
        "An invitation to bea@brightwater.example is queued to be mailed."
    )
    expect(page.get_by_role("heading", level=1)).to_contain_text("active")
    expect(_main(page).get_by_role("button", name="Approve")).to_have_count(0)

    # The applicant's invitation leads to the live server.
    invitation = mail_to("bea@brightwater.example")
    assert application["Legal name"] in invitation.get_content()
    link = link_in(invitation)
    assert link.startswith(f"{live_server}/invitations/"), link

    # The invited admin (another browser) sets a name and password and lands signed in.
    admin_page = new_context().new_page()
    admin_page.goto(link)
    expect(admin_page.get_by_role("heading", level=1)).to_have_text("Create your account")
    expect(_main(admin_page)).to_contain_text("Organisation admin")
    expect(_main(admin_page)).to_contain_text(application["Legal name"])
    screenshot(admin_page, "06-accept-invitation")
    expect(admin_page.get_by_label("Your name")).to_be_focused()
    admin_page.get_by_label("Your name").fill("Bea Bright")
    admin_page.get_by_label("Choose a password").fill(PASSWORD)
    admin_page.get_by_role("button", name="Create my account").click()
    expect(admin_page).to_have_url(re.compile(r"/org$"))
    expect(admin_page.get_by_role("status")).to_have_text("Welcome! Your account is ready.")
    expect(admin_page.get_by_role("heading", level=1)).to_have_text(application["Legal name"])
    expect(_nav(admin_page).get_by_role("link", name="Bea Bright")).to_be_visible()
    screenshot(admin_page, "07-org-dashboard")

    # The org admin invites a colleague as a member from People.
    _nav(admin_page).get_by_role("link", name="People").click()
    expect(admin_page.get_by_role("heading", level=1)).to_have_text(
        f"People of {application['Legal name']}"
    )
    invite = (
        _main(admin_page)
        .get_by_role("article")
        .filter(has=admin_page.get_by_role("heading", name="Invite someone"))
    )
    invite.get_by_label("Email").fill("carl@brightwater.example")
    invite.get_by_label("Role").select_option(label="Member")
    invite.get_by_role("button", name="Send invitation").click()
    expect(admin_page.get_by_role("status")).to_have_text(
        "Invitation to carl@brightwater.example created; its mail is queued."
    )
    expect(_main(admin_page)).to_contain_text(
        re.compile(r"carl@brightwater\.example · member · pending", re.IGNORECASE)
    )
    screenshot(admin_page, "08-people")

    # The colleague (a third browser) accepts, signs out and signs in again.
    colleague_link = link_in(mail_to("carl@brightwater.example"))
    assert colleague_link.startswith(f"{live_server}/invitations/"), colleague_link
    colleague = new_context().new_page()
    colleague.goto(colleague_link)
    expect(_main(colleague)).to_contain_text("You are invited as Member")
    colleague.get_by_label("Your name").fill("Carl Colleague")
    colleague.get_by_label("Choose a password").fill(PASSWORD)
    colleague.get_by_role("button", name="Create my account").click()
    expect(colleague).to_have_url(re.compile(r"/my$"))
    expect(colleague.get_by_role("heading", level=1)).to_have_text("My software")
    expect(_nav(colleague).get_by_role("link", name="People")).to_have_count(0)

    sign_out(colleague)
    sign_in(colleague, "carl@brightwater.example", PASSWORD)
    expect(colleague).to_have_url(re.compile(r"/my$"))
    expect(colleague.get_by_role("heading", level=1)).to_have_text("My software")
    expect(_main(colleague)).to_contain_text(application["Legal name"])
    screenshot(colleague, "09-my-software")

    # The invitation links are spent.
    colleague.goto(colleague_link)
    expect(colleague.get_by_role("heading", level=1)).to_have_text("This link does not work")

    with app.app_context():
        people = dict(
            db.session.execute(
                sa.select(User.email, User.role).where(User.organisation_id.is_not(None))
            ).all()
        )
        db.session.remove()
    assert people == {"bea@brightwater.example": "org_admin", "carl@brightwater.example": "member"}


# ------------------------------------------------------------------ bad input


def test_application_with_bad_email_shows_message_beside_the_field(app, page: Page, screenshot):
    page.goto("/apply")
    fill_application(page, **{"Your work email": "bea at brightwater"})

    expect(page.get_by_role("heading", level=1)).to_have_text("Apply for membership")
    email = page.get_by_label("Your work email")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description(re.compile(r"^Enter a valid email address"))
    expect(page.locator("#applicant_email-error")).to_contain_text("Enter a valid email address")
    # Only that field is marked; what was typed is kept.
    expect(page.locator(".field-error")).to_have_count(1)
    expect(page.get_by_label("Legal name")).to_have_value("Brightwater Logistics GmbH")
    expect(page.get_by_label("Country")).to_have_value("DE")
    screenshot(page, "10-apply-bad-email")
    assert _count(app, Organisation) == 0


def test_application_with_a_taken_slug_shows_message_beside_the_field(app, page: Page, make_org):
    make_org("brightwater")
    page.goto("/apply")
    fill_application(page, **{"Legal name": "Another Brightwater AG"})

    slug = page.get_by_label("Short name for links")
    expect(slug).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#slug-error")).to_have_text("This slug is taken; choose another.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Apply for membership")
    assert _count(app, Organisation) == 1

    # Choosing another slug goes through.
    slug.fill("brightwater-ag")
    page.get_by_role("button", name="Apply for membership").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, your application is in")
    assert _count(app, Organisation) == 2


def test_invite_and_accept_show_bad_input_on_the_page(
    app, page: Page, new_context, make_org, make_user, mail_to
):
    org = make_org("brightwater")
    admin = make_user("org_admin", org, password=PASSWORD)
    page.goto("/login")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(re.compile(r"/org$"))
    page.goto("/org/users")
    invite = _main(page).get_by_role("article").filter(has_text="Invite someone")
    invite.get_by_label("Email").fill("not an email")
    invite.get_by_role("button", name="Send invitation").click()
    # The form comes back with the message beside the field and what was typed kept.
    invite = _main(page).get_by_role("article").filter(has_text="Invite someone")
    expect(invite.locator(".field-error")).to_contain_text("valid email address")
    expect(invite.get_by_label("Email")).to_have_value("not an email")
    expect(invite.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    assert _count(app, Invitation) == 0

    invite.get_by_label("Email").fill("dana@brightwater.example")
    invite.get_by_role("button", name="Send invitation").click()
    link = link_in(mail_to("dana@brightwater.example"))

    newcomer = new_context().new_page()
    newcomer.goto(link)
    newcomer.get_by_label("Your name").fill("Dana")
    newcomer.get_by_label("Choose a password").fill("short")
    newcomer.get_by_role("button", name="Create my account").click()
    expect(newcomer.get_by_role("heading", level=1)).to_have_text("Create your account")
    expect(newcomer.get_by_label("Choose a password")).to_have_attribute("aria-invalid", "true")
    expect(newcomer.locator("#password-error")).to_contain_text("10")
    assert _count(app, User) == 1


# ------------------------------------------------------------------ signing in and out


def test_sign_out_shows_the_sign_in_link_again(page: Page, make_org, make_user, screenshot):
    member = make_user("member", make_org(), password=PASSWORD)
    page.goto("/")
    screenshot(page, "11-home-signed-out")
    sign_in(page, member.email, PASSWORD)
    expect(page).to_have_url(re.compile(r"/my$"))
    expect(_nav(page).get_by_role("button", name="Sign in")).to_have_count(0)

    sign_out(page)
    expect(page).to_have_url(re.compile(r"/login$"))
    screenshot(page, "12-signed-out")

    # The old session is gone: a member page asks to sign in again.
    page.goto("/my")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmy$"))
    expect(page.get_by_role("status")).to_have_text("Please sign in to see that page.")


def test_wrong_password_is_an_alert_and_signs_no_one_in(page: Page, make_user):
    admin = make_user("council_admin", password=PASSWORD)
    page.goto("/login")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("main").get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(_nav(page).get_by_role("button", name="Sign in")).to_be_visible()
    # The email stays typed in; the password does not.
    expect(page.get_by_label("Email")).to_have_value(admin.email)
    expect(page.get_by_label("Password")).to_have_value("")


# ------------------------------------------------------------------ keyboard


def test_keyboard_only_sign_in(page: Page, make_user):
    admin = make_user("council_admin", password=PASSWORD)
    page.goto("/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()

    page.goto("/login")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(admin.email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    # Council admins have a second factor: its code field has the focus
    expect(page).to_have_url(re.compile(r"/login/second-factor$"))
    expect(page.get_by_label("Code")).to_be_focused()
    page.keyboard.type(totp_code(email=admin.email))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/council$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Council dashboard")
