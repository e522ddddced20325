"""Run the demo: a private slapd with sample people, an SMTP server that prints mail, and the app.

    python -m pwdrst.demo [--port 5000]

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
    args = parser.parse_args(argv)

    from werkzeug.serving import make_server

    # A plain `kill` stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    slapd = sandbox.Slapd(sandbox.SAMPLE_PEOPLE)
    smtp = sandbox.SmtpSink(echo=print_mail)
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
        }
        for name, value in sandbox.as_environment(settings).items():
            os.environ.setdefault(name, value)  # the person's own PWDRST_* variables win

        from pwdrst import create_app

        app = create_app()
        server = make_server("127.0.0.1", args.port, app, threaded=True)
        print_banner(args.port, slapd, smtp)
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        print("\nstopping the demo...")
    finally:
        if server is not None:
            server.server_close()
            app.extensions["pwdrst.mail"].drain(5)
        smtp.stop()
        slapd.close()
    return 0


def print_banner(port: int, slapd, smtp) -> None:
    """Say where to go and what to try."""
    print(f"\npwdrst demo: open http://127.0.0.1:{port}/ in a browser\n")
    print(f"directory:  {slapd.url}  (base {sandbox.BASE_DN})")
    print(f"mail:       SMTP on 127.0.0.1:{smtp.port}; every mail is printed here\n")
    print("sample people (login, password, recovery address):")
    for person in (*sandbox.SAMPLE_PEOPLE, EXPIRED_PERSON):
        recovery = ", ".join(person.recovery) or "(none)"
        print(f"  {person.uid:<14} {person.password:<32} {recovery}")
    print("  (tlewandowski and tlewandowski2 share t.lewandowski@uni.example: a data fault)")
    print("  mzielinska is in the helpdesk group; kwojcik is an administrator (protected)")
    print("  mnowicka's password has expired: logging in leads only to the change form\n")
    print("Try: 'I forgot my password' for jan.kowalski@student.uni.example, then follow the link printed here.")
    print("Ctrl-C stops everything.\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
