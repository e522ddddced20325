"""Connections to the directory's servers: a failover list, kept per thread and reused.

A SYNC ldap3 connection is not thread-safe, so each thread keeps its own: one bound as the service
account, one that re-binds as each person. ldap3 binds every new client socket to a local port
before connecting, so opening a connection per operation runs out of ports under load. A stale
connection (server restarted) is replaced once; a server that refuses or does not answer within
the timeout gives DirectoryUnavailable, and new connections then start at the next server.
"""

import contextlib
import logging
import math
import ssl
import threading
import time

import ldap3
from ldap3.core import exceptions as ldap_exc

from pwdrst.directory.errors import DirectoryError, DirectoryUnavailable

logger = logging.getLogger("pwdrst.directory")

COMMUNICATION_ERRORS = (
    ldap_exc.LDAPCommunicationError,
    ldap_exc.LDAPStartTLSError,
    ldap_exc.LDAPResponseTimeoutError,
    ldap_exc.LDAPMaximumRetriesError,
    OSError,
)


def tls_problem(exc: Exception) -> str | None:
    """Return what is wrong with a server's certificate, if exc is a failed TLS handshake."""
    text = str(exc)
    lowered = text.lower()
    if "match_hostname" in lowered or "doesn't match" in lowered or "hostname mismatch" in lowered:
        return "its certificate is not valid for this host name"
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        if "hostname" in lowered or "ip address mismatch" in lowered:
            return "its certificate is not valid for this host name"
        return "its certificate is not trusted (signed by a CA that LDAP_CA_FILE does not hold, or expired)"
    if "ssl" in lowered and "wrapping error" in lowered:
        return f"the TLS handshake failed ({text})"
    return None


class ConnectionPool:
    """The servers of LDAP_URL and this process's connections to them."""

    def __init__(self, servers, bind_dn: str, bind_password: bytes, timeout: float, start_tls: bool, ca_file=None):
        self.timeout = timeout
        self.start_tls = start_tls
        self.bind_dn = bind_dn
        self._bind_password = bind_password
        tls = None
        if start_tls or ca_file or any(s[2] for s in servers):
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self.servers = [
            ldap3.Server(host, port=port, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE, connect_timeout=timeout)
            for host, port, use_ssl in servers
        ]
        self._preferred = 0
        self._local = threading.local()
        self._open_connections: set = set()
        self._generation = 0
        self._lock = threading.Lock()
        # Called with (the DirectoryError raised or None, seconds) after every operation: the metrics.
        self.observer = None

    def open(self, bind_as_service: bool) -> ldap3.Connection:
        """Open a connection to the first server that answers, starting at the preferred one."""
        last_error: Exception | None = None
        count = len(self.servers)
        start = self._preferred
        for offset in range(count):
            index = (start + offset) % count
            server = self.servers[index]
            conn = ldap3.Connection(
                server,
                user=self.bind_dn if bind_as_service else None,
                password=self._bind_password if bind_as_service else None,
                authentication=ldap3.SIMPLE,
                # ldap3 packs this into SO_RCVTIMEO with struct.pack("LL"): whole seconds only.
                receive_timeout=max(1, math.ceil(self.timeout)),
                raise_exceptions=False,
                auto_referrals=False,
                read_only=False,
            )
            # ldap3 would skip an address that failed in the last few seconds ("invalid server
            # address"); failover and recovery are ours to decide.
            server.reset_availability()
            try:
                conn.open(read_server_info=False)
                if self.start_tls:
                    conn.start_tls(read_server_info=False)
                if bind_as_service and not conn.bind(read_server_info=False):
                    conn.unbind()
                    raise DirectoryUnavailable(f"the service account cannot bind: {conn.result['description']}")
            except COMMUNICATION_ERRORS as exc:
                problem = tls_problem(exc)
                if problem:
                    logger.warning("directory server %s:%s refused by TLS: %s", server.host, server.port, problem)
                    last_error = DirectoryUnavailable(f"TLS: {server.host}:{server.port}: {problem}")
                else:
                    last_error = exc
                self._preferred = (index + 1) % count
                close(conn)
                # A server that accepted but did not answer already used the whole timeout.
                if isinstance(exc, ldap_exc.LDAPSocketReceiveError):
                    break
                continue
            self._preferred = index
            with self._lock:
                self._open_connections.add(conn)
            return conn
        raise DirectoryUnavailable(f"no directory server answered: {last_error}") from last_error

    def run(self, kind: str, operation):
        """Run operation(conn) on this thread's connection of kind, replacing a stale one once; observed."""
        if self.observer is None:
            return self._run_once(kind, operation)
        started, failure = time.perf_counter(), None
        try:
            return self._run_once(kind, operation)
        except DirectoryError as exc:
            failure = exc
            raise
        finally:
            self.observer(failure, time.perf_counter() - started)

    def _run_once(self, kind: str, operation):
        for attempt in (0, 1):
            generation, conn = getattr(self._local, kind, (None, None))
            fresh = conn is None or generation != self._generation
            if fresh:
                conn = self.open(bind_as_service=(kind == "service"))
                setattr(self._local, kind, (self._generation, conn))
            try:
                return operation(conn)
            except COMMUNICATION_ERRORS as exc:
                setattr(self._local, kind, (None, None))
                self.forget(conn)
                timed_out = isinstance(exc, ldap_exc.LDAPSocketReceiveError) and "timed out" in str(exc)
                if timed_out:
                    self._preferred = (self._preferred + 1) % len(self.servers)
                if fresh or attempt or timed_out:
                    raise DirectoryUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def dedicated(self, bind_as_service: bool = False):
        """Yield a new connection used for nothing else, closed after (e.g. to bind as one person)."""
        conn = self.open(bind_as_service)
        try:
            yield conn
        except COMMUNICATION_ERRORS as exc:
            raise DirectoryUnavailable(str(exc)) from exc
        finally:
            self.forget(conn)

    def forget(self, conn) -> None:
        """Close a connection and stop tracking it."""
        with self._lock:
            self._open_connections.discard(conn)
        close(conn)

    def after_fork(self) -> None:
        """In a forked child: leave the parent's connections to the parent, and open our own later.

        The child shares their sockets, so unbinding them (close) would end the parent's sessions on
        the server; it closes only its own copies of the descriptors. The lock and the per-thread
        connections are new too: another thread of the parent may have held them at the fork.
        """
        self._lock = threading.Lock()
        self._local = threading.local()
        connections, self._open_connections = self._open_connections, set()
        self._generation += 1
        for conn in connections:
            if getattr(conn, "socket", None) is not None:
                try:
                    conn.socket.close()
                except OSError:
                    pass

    def close(self) -> None:
        """Close every connection of every thread (at shutdown); later operations reconnect."""
        with self._lock:
            connections, self._open_connections = self._open_connections, set()
            self._generation += 1
        for conn in connections:
            close(conn)


def close(conn) -> None:
    """Close a connection, whatever state its socket is in."""
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001, S110 - closing a broken socket may fail in many ways; it is gone either way
        pass
    # ldap3 keeps the socket of a failed connect() without closing it.
    if getattr(conn, "socket", None) is not None:
        try:
            conn.socket.close()
        except OSError:
            pass
