"""Languages of the access pages (issue 14): the profile's choice, mail in the recipient's
language, and errors in the reader's language (SPEC section 8.6; docs/I18N.md)."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import User
from tests.conftest import mail_link, post_form
from tests.support import form_post, quick_user


def _choose(app, user, language: str | None) -> None:
    """Save ``language`` as ``user``'s choice, as the profile page does."""
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user.id).values(locale=language))
        db.session.commit()


def _locale(app, user) -> str | None:
    with app.app_context():
        return db.session.get(User, user.id).locale


def _body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


# ---------------------------------------------------------------- the profile's choice


def test_the_profile_offers_english_russian_and_the_browser_s_language(app, make_org, signed_in):
    member = signed_in("member", make_org())
    page = member.get("/profile").get_data(as_text=True)
    assert 'name="language-language" type="radio" value=""' in page
    assert "The browser's language" in page or "The browser&#39;s language" in page
    assert 'value="en"' in page and 'value="ru"' in page and "Русский" in page
    # No choice yet: the browser's language is the one ticked.
    assert 'checked id="language-language-0" name="language-language" type="radio" value=""' in page


def test_choosing_russian_in_the_profile_saves_it_and_speaks_it(app, make_org, signed_in):
    member = signed_in("member", make_org())
    response = form_post(
        member, "/profile/language", {"language": "ru"}, token_from="/profile", prefix="language"
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/profile")
    assert _locale(app, member.user) == "ru"
    page = member.get("/profile", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="ru"' in page and "Ваш профиль" in page and "Язык сохранён." in page
    assert (
        'checked id="language-language-2" name="language-language" type="radio" value="ru"' in page
    )


def test_choosing_the_browser_s_language_clears_the_choice_and_the_cookie(app, make_org, signed_in):
    member = signed_in("member", make_org())
    _choose(app, member.user, "ru")
    member.set_cookie("portal_language", "ru")
    response = form_post(
        member, "/profile/language", {"language": ""}, token_from="/profile", prefix="language"
    )
    assert response.status_code == 302
    assert _locale(app, member.user) is None
    assert "portal_language=;" in response.headers.get("Set-Cookie", "")  # the cookie is gone
    english = member.get("/profile", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en"' in english.get_data(as_text=True)
    russian = member.get("/profile", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert '<html lang="ru"' in russian.get_data(as_text=True)


def test_a_language_the_portal_does_not_speak_is_refused_and_nothing_changes(
    app, make_org, signed_in
):
    member = signed_in("member", make_org())
    _choose(app, member.user, "en")
    response = form_post(
        member, "/profile/language", {"language": "de"}, token_from="/profile", prefix="language"
    )
    assert response.status_code == 400
    assert "Not a valid choice" in response.get_data(as_text=True)
    assert _locale(app, member.user) == "en"


def test_the_profile_choice_needs_a_signed_in_person(client):
    response = post_form(
        client, "/profile/language", {"language-language": "ru"}, token_from="/login"
    )
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# ---------------------------------------------------------------- mail in the recipient's language


def test_a_reset_mail_is_in_the_language_each_person_chose(app, make_org, client, mailbox):
    org = make_org()
    russian = quick_user(app, "member", org)
    english = quick_user(app, "member", org)
    _choose(app, russian, "ru")
    _choose(app, english, "en")
    for person in (russian, english):
        # Whatever language the page is read in, the mail follows the person's choice.
        post_form(
            client,
            "/password/forgot",
            {"email": person.email},
            headers={"Accept-Language": "ru" if person is english else "en"},
        )
    sent = {str(m["To"]): m for m in mailbox}
    ru, en = sent[russian.email], sent[english.email]
    assert str(ru["Subject"]) == "Сброс пароля портала" and ru["Content-Language"] == "ru"
    assert "Кто-то запросил сброс пароля" in _body(ru) and "Reset" not in _body(ru)
    assert str(en["Subject"]) == "Reset your portal password" and en["Content-Language"] == "en"
    assert "Someone asked to reset the password" in _body(en) and "пароль" not in _body(en)
    assert mail_link(ru).startswith("/password/reset/")  # the link survives translation


def test_a_mail_without_a_choice_is_in_the_language_it_was_built_in(app):
    """No locale: the caller's in_language block (a job speaks English by default)."""
    from portal import i18n
    from portal.kernel.i18n import _l
    from portal.mail import build_message

    with app.test_request_context():
        plain = build_message(
            to="a@example.com",
            subject=_l("Reset your portal password"),
            template="password_reset",
            link="x",
            minutes=30,
            user=type("U", (), {"display_name": "Ann"})(),
        )
        with i18n.in_language("ru"):
            wrapped = build_message(
                to="a@example.com",
                subject=_l("Reset your portal password"),
                template="password_reset",
                link="x",
                minutes=30,
                user=type("U", (), {"display_name": "Ann"})(),
            )
    assert plain["Subject"] == "Reset your portal password" and plain["Content-Language"] == "en"
    assert wrapped["Subject"] == "Сброс пароля портала" and "30 минут" in _body(wrapped)


def test_an_invitation_is_written_in_the_language_of_the_organisation_s_admins(
    app, make_org, signed_in, mailbox
):
    org = make_org()
    admin = signed_in("org_admin", org)
    _choose(app, admin.user, "ru")
    response = form_post(
        admin,
        "/org/users/invite",
        {"email": "newcomer@example.com", "role": "member"},
        token_from="/org/users",
        prefix="invite",
    )
    assert response.status_code == 302
    (message,) = mailbox
    assert str(message["Subject"]).startswith("Приглашение на портал")
    assert "приглашает вас" in _body(message) and "«участник»" in _body(message)


# ---------------------------------------------------------------- errors in the reader's language


def test_an_error_page_speaks_the_reader_s_language(client):
    russian = client.get("/no-such-page", headers={"Accept-Language": "ru"})
    page = russian.get_data(as_text=True)
    assert russian.status_code == 404 and "404 · Не найдено" in page
    assert "Запрошенный адрес не найден на сервере." in page
    english = client.get("/no-such-page", headers={"Accept-Language": "en"})
    assert "404 · Not Found" in english.get_data(as_text=True)


def test_an_api_error_title_is_russian_only_when_asked(client):
    english = client.get("/api/v1/no-such-thing")
    russian = client.get("/api/v1/no-such-thing", headers={"Accept-Language": "ru"})
    assert english.status_code == russian.status_code == 404
    assert english.json["title"] == "Not Found" and russian.json["title"] == "Не найдено"
    assert english.json["type"] == russian.json["type"]  # codes never change
