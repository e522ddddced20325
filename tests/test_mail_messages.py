"""Every mail pwdrst sends, rendered in Polish and English and compared with files in tests/golden/.

A change to a mail's text shows up as a failing test with the difference. To accept it, rewrite the
files on purpose: `pytest tests/test_mail_messages.py --update-golden`, then read the diff.
No server is started: the messages are only rendered, never queued.
"""

import pathlib
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from flask_babel import force_locale

from pwdrst import create_app, demo, mail, sandbox

GOLDEN = pathlib.Path(__file__).parent / "golden"
WHEN = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
LINK = "https://pwdrst.uni.example/pwdrst/reset/TOKEN"

ACCOUNT = SimpleNamespace(
    login="jkowalski",
    display_name="Jan Kowalski",
    all_addresses=("jan.kowalski@uni.example", "jan.kowalski@private.example"),
)

# Each message with the domain values it is drafted from.
MESSAGES = {
    "reset_link": lambda: mail.reset_link.draft(ACCOUNT, ["jan.kowalski@private.example"], LINK, 3600),
    "helpdesk_link": lambda: mail.helpdesk_link.draft(
        ACCOUNT, ["jan.kowalski@private.example"], LINK, 4 * 3600, issued_by="helpdesk"
    ),
    "administrator_link": lambda: mail.helpdesk_link.draft(
        ACCOUNT, ["jan.kowalski@private.example"], LINK, 24 * 3600, issued_by="administrator"
    ),
    "recovery_confirmation": lambda: mail.recovery_confirmation.draft(
        ACCOUNT, "nowy@private.example", "https://pwdrst.uni.example/pwdrst/recovery/TOKEN", 24
    ),
    "password_changed": lambda: mail.password_changed.draft(ACCOUNT, "192.0.2.7", when=WHEN),
    "expiry_reminder": lambda: mail.expiry_reminder.draft(ACCOUNT, WHEN, 7),
    "recovery_changed": lambda: mail.recovery_changed.draft(
        ACCOUNT, ["jan.kowalski@private.example"], "192.0.2.7", when=WHEN
    ),
}


@pytest.fixture(scope="module")
def pure_app():
    """An app that is never connected to a server: enough to render mail."""
    settings = sandbox.app_settings("ldap://127.0.0.1:9", 9, "https://pwdrst.uni.example/pwdrst")
    theme = {**demo.SAMPLE_THEME, "ORGANISATION_NAME": "Uniwersytet Przykładowy"}
    return create_app({**settings, **theme, "TESTING": True, "SECRET_KEY": "golden-secret-key-0123456789abcdef0123"})


def rendered(app, name: str, language: str) -> dict[str, str]:
    """Return the subject, recipients, text and HTML of one message in one language."""
    with app.test_request_context(), force_locale(language):
        job = MESSAGES[name]()
    message = job.render(app)
    head = f"To: {', '.join(message.recipients)}\nSubject: {message.subject}\n\n"
    return {"txt": head + message.body, "html": message.html}


@pytest.mark.parametrize("language", ["pl", "en"])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_mail_matches_its_golden_file(pure_app, name, language, request):
    for kind, text in rendered(pure_app, name, language).items():
        path = GOLDEN / f"{name}.{language}.{kind}"
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"{path.name} is missing: run pytest with --update-golden and read the diff"
        assert text == path.read_text(encoding="utf-8"), f"{path.name} changed (--update-golden accepts it)"


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_the_two_languages_differ(pure_app, name):
    assert rendered(pure_app, name, "pl")["txt"] != rendered(pure_app, name, "en")["txt"]


def test_a_message_function_queues_its_mail(pure_app):
    queue = pure_app.extensions["pwdrst.mail"]
    with pure_app.test_request_context():
        mail.password_changed(ACCOUNT, "192.0.2.7", when=WHEN)
        assert queue.pending() == 1
    # Nothing listens on the app's SMTP port: drain gives up at once, and the mail is logged as lost.
    assert queue.drain(0.2) is False
