"""Mail: every message pwdrst sends, rendered from .txt + .html templates and sent off the request path.

The only module that imports Flask-Mail. Each message is a named function (`reset_link`,
`helpdesk_link`, `recovery_confirmation`, `password_changed`, `recovery_changed`) that takes domain
values, and queues the mail in the request's language; its `draft` attribute returns the unsent
mail, for tests. Worker threads render and deliver it, retrying with the delays of MAIL_RETRY_DELAYS while
the SMTP server refuses or is down. Every attempt is logged with the mail's kind and recipients,
never its body (which may carry a link). At shutdown, pending mail gets MAIL_SHUTDOWN_GRACE seconds;
what is still undelivered is logged as an error, recipient by recipient.
"""

import atexit
import base64
import heapq
import itertools
import logging
import re
import secrets
import smtplib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parseaddr
from functools import wraps

from flask import current_app, render_template
from flask_babel import force_locale, get_locale
from flask_babel import lazy_gettext as _l
from flask_mail import Connection, Mail, Message

logger = logging.getLogger(__name__)


@dataclass(order=True)
class Job:
    """One message waiting to be delivered."""

    due: float
    seq: int
    kind: str = field(compare=False)
    message: "Rendered | Message | MailJob" = field(compare=False)
    attempt: int = field(default=0, compare=False)


# Seconds a worker keeps an idle SMTP connection open, so that a burst of mail shares one.
SMTP_IDLE = 5.0


class TimedConnection(Connection):
    """Flask-Mail's connection, but with MAIL_TIMEOUT: its own waits forever on a hung server."""

    def configure_host(self) -> smtplib.SMTP:
        timeout = float(current_app.config["MAIL_TIMEOUT"])
        smtp_class = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = smtp_class(self.mail.server, self.mail.port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


class SmtpSession:
    """One worker's SMTP connection, opened on first use and reused while mail keeps coming."""

    def __init__(self, mail: Mail):
        self.mail = mail
        self.connection = None

    @property
    def is_open(self) -> bool:
        return self.connection is not None

    def send(self, message: "Rendered | Message") -> None:
        """Send over the open connection; a reused one that fails is replaced once."""
        wire = message.wire() if isinstance(message, Rendered) else None
        if isinstance(message, Rendered) and wire is None:
            message = message.message()  # what the fast path does not cover: Flask-Mail builds it
        for attempt in (0, 1):
            reused = self.connection is not None
            if not reused:
                connection = TimedConnection(current_app.extensions["mail"])
                connection.__enter__()
                self.connection = connection
            try:
                if wire is None:
                    self.connection.send(message)
                elif self.connection.host is not None:  # None: MAIL_SUPPRESS_SEND
                    self.connection.host.sendmail(wire.sender, wire.recipients, wire.data)
                return
            except (smtplib.SMTPException, OSError):
                self.close()
                if not reused or attempt:
                    raise

    def close(self) -> None:
        """Say QUIT and forget the connection (a broken one is just dropped)."""
        if self.connection is not None:
            connection, self.connection = self.connection, None
            try:
                connection.__exit__(None, None, None)
            except (smtplib.SMTPException, OSError):
                pass


class DirectSender:
    """Send mail now, one after another over one SMTP connection, and say whether each went.

    For batch commands that must know, mail by mail, what was delivered before recording it (the
    expiry reminders): the queue's worker threads retry in the background and cannot tell them.
    A mail that fails is logged with its kind and recipients, never its body, and not retried: the
    next run sends it again. Use it as a context manager inside the app context.
    """

    def __init__(self):
        self.smtp = SmtpSession(current_app.extensions["mail"])

    def __enter__(self) -> "DirectSender":
        return self

    def __exit__(self, *exc) -> None:
        self.smtp.close()

    def send(self, job: "MailJob") -> bool:
        """Render and send one mail; return whether the SMTP server took it."""
        try:
            self.smtp.send(job.render(current_app._get_current_object()))
        except (smtplib.SMTPException, OSError) as exc:
            logger.error("mail %s to %s undelivered: %s", job.template, ", ".join(job.recipients), exc)
            return False
        return True


class MailQueue:
    """A queue of messages, delivered by worker threads with retries."""

    def __init__(self, app):
        self.app = app
        self.mail = Mail(app)
        self.delays = [float(d) for d in app.config["MAIL_RETRY_DELAYS"]]
        self.worker_count = max(1, int(app.config["MAIL_WORKERS"]))
        self.grace = float(app.config["MAIL_SHUTDOWN_GRACE"])
        self._heap: list[Job] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._busy = 0
        self._in_flight: dict[int, Job] = {}
        self._workers: list[threading.Thread] = []
        self._closing = False
        self.failed = 0
        # Called with (event or None, queue depth) as mail moves: the metrics (pwdrst.metrics).
        self.observer = None

    def put(self, kind: str, message: Message) -> None:
        """Queue a message for delivery now."""
        with self._cond:
            if self._closing:
                # Shutting down: deliver in this thread rather than lose it.
                self._deliver_now(Job(time.monotonic(), next(self._seq), kind, message))
                return
            self._ensure_workers()
            heapq.heappush(self._heap, Job(time.monotonic(), next(self._seq), kind, message))
            self._cond.notify()
        self._observe("queued")

    def _ensure_workers(self) -> None:
        # Started on first use, so that each forked server worker runs its own threads.
        self._workers = [t for t in self._workers if t.is_alive()]
        while len(self._workers) < self.worker_count:
            thread = threading.Thread(target=self._work, name="pwdrst-mail", daemon=True)
            thread.start()
            self._workers.append(thread)

    def _work(self) -> None:
        smtp = SmtpSession(self.mail)
        try:
            while True:
                job = self._next_job(smtp)
                if job is None:
                    return
                try:
                    with self.app.app_context():
                        self._deliver_now(job, smtp)
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._in_flight.pop(job.seq, None)
                        self._cond.notify_all()
                    self._observe(None)
        finally:
            smtp.close()

    def _next_job(self, smtp: "SmtpSession") -> Job | None:
        """Wait for the next due job; hang up an idle SMTP connection meanwhile. None: shut down."""
        while True:
            with self._cond:
                if self._heap and self._heap[0].due <= time.monotonic():
                    self._busy += 1
                    job = heapq.heappop(self._heap)
                    self._in_flight[job.seq] = job
                    return job
                if self._closing and not self._heap:
                    return None
                timeout = self._heap[0].due - time.monotonic() if self._heap else None
                if smtp.is_open:
                    timeout = SMTP_IDLE if timeout is None else min(timeout, SMTP_IDLE)
                woken = self._cond.wait(timeout)
                idle = not woken and not self._heap
            if idle and smtp.is_open:
                smtp.close()  # outside the lock: QUIT is network I/O

    def _deliver_now(self, job: Job, smtp: "SmtpSession | None" = None) -> None:
        recipients = ", ".join(job.message.recipients)
        if isinstance(job.message, MailJob):
            try:
                job.message = job.message.render(self.app)
            except Exception:  # noqa: BLE001 - a template fault must not kill the worker thread
                self.failed += 1
                self._observe("failed")
                logger.exception("mail %s to %s could not be rendered", job.kind, recipients)
                return
        try:
            if smtp is None:  # shutting down: a connection just for this one
                smtp = SmtpSession(self.mail)
                with self.app.app_context():
                    try:
                        smtp.send(job.message)
                    finally:
                        smtp.close()
            else:
                smtp.send(job.message)
        except (smtplib.SMTPException, OSError) as exc:
            job.attempt += 1
            if job.attempt > len(self.delays):
                self.failed += 1
                self._observe("failed")
                logger.error("mail %s to %s undelivered after %d attempts: %s", job.kind, recipients, job.attempt, exc)
                return
            delay = self.delays[job.attempt - 1]
            logger.warning(
                "mail %s to %s failed (attempt %d: %s); retrying in %gs",
                job.kind,
                recipients,
                job.attempt,
                exc,
                delay,
            )
            job.due = time.monotonic() + delay
            with self._cond:
                heapq.heappush(self._heap, job)
                self._cond.notify()
            self._observe("retried")
            return
        logger.info("mail %s to %s delivered (attempt %d)", job.kind, recipients, job.attempt + 1)
        self._observe("sent")

    def _observe(self, event: str | None) -> None:
        if self.observer is not None:
            self.observer(event, self.pending())

    def pending(self) -> int:
        """Return how many messages are queued or being sent."""
        with self._cond:
            return len(self._heap) + self._busy

    def drain(self, timeout: float | None = None) -> bool:
        """Deliver what is pending, retrying at once; wait up to timeout. Return True if all went.

        Whatever is still undelivered at the end is logged as an error, recipient by recipient.
        """
        timeout = self.grace if timeout is None else timeout
        deadline = time.monotonic() + timeout
        failed_before = self.failed
        with self._cond:
            self._closing = True
            if self._heap:
                self._ensure_workers()
            for job in self._heap:
                job.due = min(job.due, time.monotonic())
            heapq.heapify(self._heap)
            self._cond.notify_all()
            while (self._heap or self._busy) and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            left = list(self._heap)
            self._heap.clear()
            # Still being tried when time ran out: if the process ends now, they are lost too.
            left += [job for job in self._in_flight.values() if job.due <= time.monotonic()]
            self._closing = False
        for job in left:
            self._observe("failed")
            for recipient in job.message.recipients:
                logger.error("mail %s to %s undelivered at shutdown", job.kind, recipient)
        return not left and self.failed == failed_before


def init_app(app) -> None:
    """Create the app's mail queue and drain it when the process exits."""
    queue = MailQueue(app)
    app.extensions["pwdrst.mail"] = queue
    atexit.register(queue.drain)


def mail_queue() -> MailQueue:
    """Return the current app's mail queue."""
    return current_app.extensions["pwdrst.mail"]


# An address the fast path writes as it is: ASCII, no spaces, quotes, brackets or line breaks.
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
# Bytes of UTF-8 per RFC 2047 encoded word: 39 bytes are 52 characters of base64; with "=?utf-8?b?"
# and "?=" a word is 64 characters, so even "Subject: " and the first word stay within 76.
WORD_BYTES = 39
FOLDED_COMMA = ",\r\n "  # one address per line keeps each header line short


def _encoded_words(text: str) -> str:
    """Return text as RFC 2047 base64 words, folded one per line, never splitting a character."""
    words, chunk = [], b""
    for character in text:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words)


def _body_part(content_type: str, text: str) -> str:
    encoded = base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}'


@dataclass
class Wire:
    """A message as SMTP carries it: envelope and bytes."""

    sender: str
    recipients: list
    data: bytes


@dataclass
class Rendered:
    """A rendered mail: subject, recipients and both bodies, and the bytes to send.

    Python's email package spent about 5 ms of CPU building each of our messages (header objects,
    policies, folding), more than rendering, the directory and the policy of a password change
    together. Our messages have one shape (a text and an HTML alternative, UTF-8, a sender and
    plain addresses), so wire() writes that shape directly; anything else (an address that needs
    IDNA or quoting, a sender's name in an unexpected form) goes through Flask-Mail as before.
    """

    subject: str
    sender: str
    recipients: list
    body: str
    html: str

    def message(self) -> Message:
        """Return the same mail as a Flask-Mail message."""
        return Message(
            subject=self.subject, sender=self.sender, recipients=self.recipients, body=self.body, html=self.html
        )

    def wire(self, now: float | None = None) -> Wire | None:
        """Return the message as multipart/alternative bytes with CRLF lines, or None (see above)."""
        name, address = parseaddr(self.sender)
        if not PLAIN_ADDRESS.fullmatch(address) or not all(PLAIN_ADDRESS.fullmatch(r) for r in self.recipients):
            return None
        if not self.recipients or any(c in self.sender for c in "\r\n"):
            return None
        boundary = "=_pwdrst_" + secrets.token_hex(12)
        sender = f"{_encoded_words(name)} <{address}>" if name else address
        head = (
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
            "MIME-Version: 1.0\r\n"
            f"Subject: {_encoded_words(self.subject)}\r\n"
            f"From: {sender}\r\n"
            f"To: {FOLDED_COMMA.join(self.recipients)}\r\n"
            f"Date: {formatdate(now, usegmt=True)}\r\n"
            f"Message-ID: <{time.time_ns()}.{secrets.token_hex(8)}@{address.rpartition('@')[2]}>\r\n"
            "\r\n"
        )
        parts = (_body_part("text/plain", self.body), _body_part("text/html", self.html))
        text = head + "".join(f"--{boundary}\r\n{part}" for part in parts) + f"--{boundary}--\r\n"
        return Wire(address, list(self.recipients), text.encode("ascii"))


@dataclass
class MailJob:
    """A mail to render in the worker."""

    recipients: list
    subject: object
    template: str
    locale: str
    context: dict

    def render(self, app) -> Rendered:
        with app.test_request_context(base_url=app.config["PUBLIC_URL"]), force_locale(self.locale):
            context = {"config": app.config, **self.context}
            sender = app.config["MAIL_DEFAULT_SENDER"]
            return Rendered(
                subject=f"{self.subject} | {app.config['ORGANISATION_NAME']}",
                sender=sender if isinstance(sender, str) else f"{sender[0]} <{sender[1]}>",
                recipients=list(self.recipients),
                body=render_template(f"mail/{self.template}.txt", **context),
                html=render_template(f"mail/{self.template}.html", **context),
            )


# ---------------------------------------------------------------- the messages


def message(template: str, subject):
    """Make a message function from one that returns (recipients, template context).

    Calling the result queues the mail; its `draft(...)` returns the MailJob without queueing it.
    Rendering happens in the worker, not in the request, so that a request that sends mail takes
    the same time as one that does not. The context must be plain data (nothing bound to a request).
    """

    def decorate(compose):
        def draft(*args, **kwargs) -> MailJob:
            recipients, context = compose(*args, **kwargs)
            return MailJob(list(recipients), subject, template, str(get_locale() or "pl"), context)

        @wraps(compose)
        def send(*args, **kwargs) -> None:
            mail_queue().put(template, draft(*args, **kwargs))

        send.draft = draft
        return send

    return decorate


def _about(account) -> dict:
    return {"login": account.login, "display_name": account.display_name}


@message("reset", _l("Set a new password"))
def reset_link(account, recipients, link: str, max_age: int):
    """Mail a reset link the person asked for, valid max_age seconds."""
    return recipients, {**_about(account), "link": link, "minutes": max_age // 60, "hours": max_age // 3600}


@message("reset", _l("Set a new password"))
def helpdesk_link(account, recipients, link: str, max_age: int, issued_by: str):
    """Mail a reset link that the helpdesk or an administrator ("helpdesk", "administrator") issued."""
    context = {**_about(account), "link": link, "minutes": max_age // 60, "hours": max_age // 3600}
    return recipients, {**context, "issued_by": issued_by}


@message("recovery_confirm", _l("Confirm your recovery address"))
def recovery_confirmation(account, address: str, link: str, hours: int):
    """Mail the link that confirms a new recovery address to that address."""
    return [address], {**_about(account), "link": link, "hours": hours}


@message("password_changed", _l("Your password was changed"))
def password_changed(account, client: str, when: datetime | None = None):
    """Tell every address of the account that its password changed, when and from where."""
    return account.all_addresses, {**_about(account), "client": client, "when": when or datetime.now(UTC)}


@message("recovery_changed", _l("Your recovery address was changed"))
def recovery_changed(account, recipients, client: str, when: datetime | None = None):
    """Tell the previous recovery addresses that the recovery addresses changed, when and from where."""
    return recipients, {**_about(account), "client": client, "when": when or datetime.now(UTC)}


@message("expiry_reminder", _l("Your password expires soon"))
def expiry_reminder(account, expires: datetime, days_left: int):
    """Tell the person when their password expires and where to change it (an address as text, no link)."""
    context = {**_about(account), "when": expires, "days": days_left}
    return account.all_addresses, {**context, "change_page": current_app.config["PUBLIC_URL"] + "/password"}
