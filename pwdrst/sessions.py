"""Server-side sessions: the cookie holds only a random id, the state lives in Redis or a local directory.

The only importer of Flask-Session and cachelib. Next to the sessions, the same store keeps two kinds
of marks: ended session ids (so that a request racing a logout cannot write the session back), and
each account's session generation (a password change draws a new one, which ends every session
holding an older one, on every worker and app server that shares the store).
"""

import os
import secrets
import stat
import tempfile

import msgspec
from cachelib import FileSystemCache, RedisCache
from flask import current_app, request, session
from flask_session.cachelib import CacheLibSessionInterface
from flask_session.redis import RedisSessionInterface
from redis import Redis

from pwdrst.config import ConfigError

KEY_PREFIX = "pwdrst:session:"
MARK_PREFIX = "pwdrst:mark:"
# Bytes of randomness in a session id (secrets.token_urlsafe: 43 characters in the cookie).
ID_BYTES = 32
# cachelib's file store deletes the oldest files beyond this many; far above one machine's sessions.
FILE_THRESHOLD = 100_000


class _Guarded:
    """What pwdrst adds to Flask-Session's interfaces: ended ids stay ended, static files write nothing."""

    marks = None
    mark_lifetime = 0

    def open_session(self, app, request):
        sid = request.cookies.get(app.config["SESSION_COOKIE_NAME"])
        if sid and self.marks.get(MARK_PREFIX + "ended:" + sid):
            return self.session_class(sid=self.new_id(), permanent=self.permanent)
        return super().open_session(app, request)

    def should_set_storage(self, app, session):
        # A stylesheet fetched beside a logout would otherwise write the logged-in session back.
        if request.endpoint == "static":
            return False
        return super().should_set_storage(app, session)

    def new_id(self) -> str:
        """Return a fresh random session id."""
        return self._generate_sid(self.sid_length)

    def end_id(self, sid: str) -> None:
        """Delete a session from the store and refuse its id from now on."""
        self.marks.set(MARK_PREFIX + "ended:" + sid, 1, timeout=self.mark_lifetime)
        self._delete_session(self._get_store_id(sid))


class RedisSessions(_Guarded, RedisSessionInterface):
    """Sessions in Redis, shared by every worker and app server."""

    def open_session(self, app, request):
        # The ended-id check rides in the session's own read (_retrieve_session_data): one round trip.
        return RedisSessionInterface.open_session(self, app, request)

    def _retrieve_session_data(self, store_id: str):
        """Return the stored session, or None when there is none or its id has ended (one MGET)."""
        ended = MARK_PREFIX + "ended:" + store_id.removeprefix(self.key_prefix)
        mark, data = self.client.mget([ended, store_id])
        if mark is not None or not data:
            return None  # Flask-Session then starts an empty session under a new id
        return self.serializer.decode(data)


class FileSessions(_Guarded, CacheLibSessionInterface):
    """Sessions in a directory, shared by the workers of one machine."""


def default_directory() -> str:
    """Return the session directory used when SESSION_DIRECTORY is not set."""
    return os.path.join(tempfile.gettempdir(), f"pwdrst-sessions-{os.getuid()}")


def _private_directory(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    # In a shared temp dir another local user could have made it first: never use theirs.
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(f"SESSION_DIRECTORY {path} must belong to this user with mode 0700")
    return path


def init_app(app) -> None:
    """Keep the app's sessions in Redis (SESSION_STORAGE_URI) or in SESSION_DIRECTORY."""
    config = app.config
    common = {"key_prefix": KEY_PREFIX, "sid_length": ID_BYTES, "permanent": True}
    uri = config["SESSION_STORAGE_URI"]
    if uri:
        client = Redis.from_url(uri)
        interface = RedisSessions(app, client=client, serialization_format="msgpack", **common)
        # Flash messages may be lazy (translated when shown): store their text.
        interface.serializer.encoder = msgspec.msgpack.Encoder(enc_hook=str)
        interface.marks = RedisCache(host=client, key_prefix="")
    else:
        path = _private_directory(config["SESSION_DIRECTORY"] or default_directory())
        cache = FileSystemCache(path, threshold=FILE_THRESHOLD, mode=0o600)
        interface = FileSessions(app, client=cache, **common)
        interface.marks = cache
    interface.mark_lifetime = int(config["SESSION_MAX_AGE"])
    app.session_interface = interface


def renew_id() -> None:
    """Move the current session to a new id; the old id is deleted and never loads again."""
    interface = current_app.session_interface
    interface.end_id(session.sid)
    session.sid = interface.new_id()
    session.modified = True


def generation(login: str):
    """Return the account's current session generation (None until pwdrst first changed its password)."""
    return current_app.session_interface.marks.get(MARK_PREFIX + "generation:" + login)


def new_generation(login: str) -> str:
    """Draw a new session generation for the account, which ends every session holding an older one."""
    value = secrets.token_urlsafe(12)
    # No expiry: a lost mark would let a session from before the change live on.
    current_app.session_interface.marks.set(MARK_PREFIX + "generation:" + login, value, timeout=0)
    return value
