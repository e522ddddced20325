"""Run the demo: a private slapd with sample people, an SMTP server that prints mail, and the app.

    python -m pwdrst.demo [--port 5000] [--ldap-port N] [--smtp-port N]

Everything listens on 127.0.0.1 only. Ctrl-C stops all three and removes the directory's files.
PWDRST_* variables still apply (e.g. PWDRST_ORGANISATION_NAME).
"""

import argparse
import os
import secrets
import signal
import sys
import threading

from pwdrst import sandbox

_print_lock = threading.Lock()

# The sample theme of deploy/sample-theme/: how an organisation brands the app without editing it.
SAMPLE_THEME_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "sample-theme")
SAMPLE_THEME = {
    "ORGANISATION_LOGO_FILE": os.path.join(SAMPLE_THEME_DIR, "logo.svg"),
    "ORGANISATION_FAVICON_FILE": os.path.join(SAMPLE_THEME_DIR, "favicon.svg"),
    "ORGANISATION_COLOUR": "#7b1e3c",
    "ORGANISATION_FOOTER_LINKS": [
        [{"pl": "Polityka prywatności", "en": "Privacy policy"}, "https://uni.example/prywatnosc"],
        [{"pl": "Deklaracja dostępności", "en": "Accessibility statement"}, "https://uni.example/dostepnosc"],
    ],
}

EXPIRED_PERSON = sandbox.Person(
    "mnowicka",
    "Marta",
    "Nowicka",
    "Stara-lampa-na-poddaszu-21",
    ("marta.nowicka@uni.example", "mnowicka@uni.example"),
    ("marta.nowicka@private.example",),
)


def print_mail(message) -> None:
    """Print a captured mail (its text part) to the terminal."""
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else message.get_content()
    with _print_lock:
        print("\n" + "=" * 30 + " mail " + "=" * 30)
        for header in ("From", "To", "Subject"):
            print(f"{header}: {message[header]}")
        print()
        print(text.rstrip())
        print("=" * 66 + "\n", flush=True)


def main(argv=None) -> int:
    """Start everything and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PWDRST_DEMO_PORT", "5000")))
    parser.add_argument("--ldap-port", type=int, help="port of the demo's slapd (default: a free one)")
    parser.add_argument("--smtp-port", type=int, help="port of the demo's SMTP server (default: a free one)")
    args = parser.parse_args(argv)

    from werkzeug import serving

    # Werkzeug colours its request log unconditionally; colour codes only belong on a terminal.
    serving._log_add_style = sys.stderr.isatty()

    # A plain `kill` stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    slapd = sandbox.Slapd(sandbox.SAMPLE_PEOPLE, port=args.ldap_port)
    smtp = sandbox.SmtpSink(port=args.smtp_port, echo=print_mail)
    server = None
    try:
        slapd.start()
        # One person whose password has expired, for the "must change" path.
        expired_policy = slapd.add_policy("expired-demo", pwdMaxAge=86400, pwdGraceAuthNLimit=1)
        slapd.add_person(EXPIRED_PERSON)
        slapd.expire_password(EXPIRED_PERSON.dn, expired_policy)
        smtp.start()
        settings = {
            **sandbox.app_settings(slapd.url, smtp.port, f"http://127.0.0.1:{args.port}"),
            "SECRET_KEY": secrets.token_urlsafe(32),
            "TRUSTED_HOSTS": ["127.0.0.1", "localhost"],
            "RECOVERY_FORBIDDEN_DOMAINS": list(sandbox.MAIL_DOMAINS),
            "POLICY_ORGANISATION_WORDS": ["Uniwersytet", "Przykładowy", "UP", "uni", "example"],
            **SAMPLE_THEME,
        }
        for name, value in sandbox.as_environment(settings).items():
            os.environ.setdefault(name, value)  # the person's own PWDRST_* variables win

        from pwdrst import create_app

        app = create_app()
        server = serving.make_server("127.0.0.1", args.port, app, threaded=True)
        print_banner(args.port, slapd, smtp)
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass  # werkzeug's serve_forever swallows Ctrl-C itself and returns; either way, stop below
    finally:
        print("\nstopping the demo...", flush=True)
        if server is not None:
            server.server_close()
            app.extensions["pwdrst.mail"].drain(5)
            print(f"stopped: the app on 127.0.0.1:{args.port}", flush=True)
        if smtp.running:
            smtp.stop()
            print(f"stopped: the SMTP server on 127.0.0.1:{smtp.port}", flush=True)
        slapd.close()
        print(f"stopped: slapd on {slapd.url}, its files removed", flush=True)
    return 0


ROLES = {sandbox.HELPDESK_GROUP: "helpdesk", sandbox.ADMIN_GROUP: "admin", sandbox.PROTECTED_GROUP: "protected"}


def role_of(person) -> str:
    """Return a sample person's roles in words: person, helpdesk, admin, protected."""
    return ", ".join(ROLES[g] for g in ROLES if g in person.groups) or "person"


def print_banner(port: int, slapd, smtp) -> None:
    """Say where to go, who to be and what to try."""
    base = f"http://127.0.0.1:{port}"
    print(f"\npwdrst demo: {base}/")
    print(f"  forgot password: {base}/reset")
    print(f"  log in:          {base}/login")
    print(f"  helpdesk:        {base}/helpdesk/  (log in as mzielinska or kwojcik)\n")
    print(f"directory:  {slapd.url}  (base {sandbox.BASE_DN})")
    print(f"mail:       SMTP on 127.0.0.1:{smtp.port}; every mail is printed here\n")
    print("sample accounts:")
    for person in (*sandbox.SAMPLE_PEOPLE, EXPIRED_PERSON):
        print(f"  {person.uid:<14} {role_of(person):<20} password: {person.password}")
        print(f"  {'':<14} university: {', '.join(person.mail)}")
        print(f"  {'':<14} recovery:   {', '.join(person.recovery) or '(none)'}")
    print("  (tlewandowski and tlewandowski2 share t.lewandowski@uni.example: a data fault)")
    print("  mnowicka's password has expired: logging in leads only to the change form\n")
    print("Try: 'I forgot my password' for jan.kowalski@student.uni.example, then follow the link printed here.")
    print("Ctrl-C stops everything.\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
