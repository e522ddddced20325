"""Password-expiry reminders: who is due which reminder today, and the record of what was sent.

A reminder names no link to click: it says when the password expires and gives the address of the
change page (PUBLIC_URL + /password) as text, so that reminders do not train people to follow
links in mail.

Each threshold's reminder goes once per password: the record is keyed by login, the time of the
last change and the threshold, so a new password starts afresh. A run that comes late (a missed
day) sends only the threshold now due, not the ones already passed. The record lives in the shared
store when RATELIMIT_STORAGE_URI is Redis, else in REMINDER_STATE_DIR/reminders.json (locked while a
run holds it, so two runs at once do not both send).
"""

import fcntl
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from flask_babel import force_locale

from pwdrst import audit, mail
from pwdrst.directory import Account, directory

DAY = 86400
STATE_FILE = "reminders.json"


@dataclass(frozen=True)
class Row:
    """One person's line of the report."""

    login: str
    days_left: int
    outcome: str
    threshold: int | None = None


def now() -> datetime:
    """Return the current time (a function, so that tests can move the clock)."""
    return datetime.now(UTC)


def parse_days(text: str) -> list[int]:
    """Turn "14,7,1" into [14, 7, 1]; raise ValueError unless each is a whole number of days above 0."""
    days = sorted({int(part) for part in str(text).split(",") if part.strip()}, reverse=True)
    if not days or days[-1] < 1:
        raise ValueError("give whole numbers of days above 0, such as 14,7,1")
    return days


def due_threshold(seconds_left: float, thresholds: list[int]) -> int | None:
    """Return the smallest threshold (in days) the time left falls within, or None if none."""
    within = [t for t in thresholds if seconds_left <= t * DAY]
    return min(within) if within else None


def record_key(account: Account, threshold: int) -> str:
    """Return the key of one reminder: login, the last change, the threshold."""
    changed = account.password_changed_at.strftime("%Y%m%d%H%M%SZ")
    return f"{account.login}|{changed}|{threshold}"


# ---------------------------------------------------------------- the record of what was sent


class FileRecord:
    """Sent reminders in a JSON file of {key: unix time it may be forgotten}, locked while open."""

    def __init__(self, directory_path: str):
        self.path = os.path.join(directory_path, STATE_FILE)
        self.entries: dict[str, float] = {}
        self._lock = None

    def __enter__(self) -> "FileRecord":
        folder = os.path.dirname(self.path)
        try:
            self._lock = open(self.path + ".lock", "a")  # noqa: SIM115 - held until __exit__
        except OSError as exc:
            raise OSError(f"REMINDER_STATE_DIR {folder} cannot be written: {exc.strerror}") from None
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            with open(self.path, encoding="utf-8") as fh:
                self.entries = {k: float(v) for k, v in json.load(fh).items()}
        except FileNotFoundError:
            self.entries = {}
        except (ValueError, AttributeError) as exc:
            raise OSError(f"{self.path} is not a reminder record ({exc}); move it away to start afresh") from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.close()

    def seen(self, key: str) -> bool:
        return self.entries.get(key, 0) > time.time()

    def mark(self, key: str, keep_until: float) -> None:
        self.entries[key] = keep_until
        self._save()

    def _save(self) -> None:
        current = {k: v for k, v in self.entries.items() if v > time.time()}
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".reminders-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(current, fh, sort_keys=True)
        os.replace(tmp, self.path)


class RedisRecord:
    """Sent reminders as keys of the shared Redis store, each expiring when it cannot matter."""

    PREFIX = "pwdrst:reminder:"

    def __init__(self, uri: str):
        import redis

        self.client = redis.Redis.from_url(uri)

    def __enter__(self) -> "RedisRecord":
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()

    def seen(self, key: str) -> bool:
        return bool(self.client.exists(self.PREFIX + key))

    def mark(self, key: str, keep_until: float) -> None:
        self.client.set(self.PREFIX + key, "1", exat=int(keep_until) + 1)


def open_record():
    """Return the record of sent reminders this configuration uses (Redis or the state file)."""
    uri = current_app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisRecord(uri)
    return FileRecord(current_app.config["REMINDER_STATE_DIR"])


def describe_record() -> str:
    """Say where the record of sent reminders is kept, for the command's output."""
    uri = current_app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return "Redis (RATELIMIT_STORAGE_URI)"
    return os.path.join(current_app.config["REMINDER_STATE_DIR"], STATE_FILE)


# ---------------------------------------------------------------- the run


def people() -> list[tuple[Account, int | None]]:
    """Return every person with their maximum password age (one paged search)."""
    return directory.password_ages()


def remind(account: Account, max_age: int | None, thresholds: list[int], record, actor: str, sender) -> Row | None:
    """Decide one person's reminder and send it (sender None: a dry run); return the report's row.

    None: the password never expires. A reminder is recorded only once the SMTP server took it, so
    one that could not be delivered goes again at the next run (the threshold then due).
    """
    if not max_age or account.password_changed_at is None:
        return None
    expires = account.password_changed_at + timedelta(seconds=max_age)
    left = (expires - now()).total_seconds()
    days_left = math.ceil(left / DAY)
    if account.must_change:
        return Row(account.login, days_left, "must_change")
    if left <= 0:
        return Row(account.login, days_left, "expired")
    threshold = due_threshold(left, thresholds)
    if threshold is None:
        return Row(account.login, days_left, "not_due")
    key = record_key(account, threshold)
    if record.seen(key):
        return Row(account.login, days_left, "already_sent", threshold)
    if not account.all_addresses:
        return Row(account.login, days_left, "no_address", threshold)
    if sender is None:
        return Row(account.login, days_left, "would_send", threshold)
    with force_locale(current_app.config["LANGUAGES"][0]):
        draft = mail.expiry_reminder.draft(account, expires, days_left)
    if not sender.send(draft):
        audit.log("expiry_reminder", "mail_failed", account=account.login, actor=actor, days=threshold)
        return Row(account.login, days_left, "mail_failed", threshold)
    # Kept until the password expires and a day more: by then no threshold of it can come due.
    record.mark(key, expires.timestamp() + DAY)
    audit.log("expiry_reminder", "sent", account=account.login, actor=actor, days=threshold, days_left=days_left)
    return Row(account.login, days_left, "sent", threshold)
