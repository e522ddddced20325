"""The directory's other clients on loopback: Dovecot IMAP and Apache httpd's LDAP sign-on.

Nothing here is used by the running application. The tests start these next to the sandbox slapd
(`pwdrst.sandbox.Slapd`) to show what a person's password does outside pwdrst: both servers
authenticate by binding to the directory as the person, as a university's mail and single sign-on
would. Each instance lives in a temporary directory of its own (configuration, state, logs, sockets)
and listens on a free 127.0.0.1 port; Debian's system services are never used.
"""

import base64
import http.client
import imaplib
import os
import shutil
import signal
import subprocess
import tempfile
import time

from pwdrst.sandbox import PEOPLE_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd, free_port, wait_for_port

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"
SETUP_HINT = "run scripts/setup.sh to install it"

# The person's entry, found by login: the same filter for both clients.
USER_FILTER = "(objectClass=inetOrgPerson)"


class MissingPackage(RuntimeError):
    """A Debian package the sandbox server needs is not installed."""


def _require(needs) -> None:
    for path, package in needs:
        if not os.path.exists(path):
            raise MissingPackage(f"{path} is missing: the Debian package {package} is not installed; {SETUP_HINT}")


def _stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop a server started in its own session, and whatever it forked."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _live_members(pgid: int) -> list[int]:
    """Return the processes of a process group that still run (zombies left to init do not count)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(name))
    return pids


def _wait_for_group_exit(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no process of a process group is left (the children exit after their parent)."""
    deadline = time.monotonic() + timeout
    while _live_members(pgid):
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.02)


class _Server:
    """A daemon run in the foreground in a temporary directory of its own."""

    prefix = "pwdrst-server-"
    # (file, the Debian package that installs it)
    needs: tuple[tuple[str, str], ...] = ()

    def __init__(self, slapd: Slapd):
        self.slapd = slapd
        self.port = free_port()
        self.root = ""
        self.process: subprocess.Popen | None = None
        self.started_in = 0.0

    def _dir(self, name: str) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _configure(self) -> None:
        raise NotImplementedError

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, "log", "server.log")

    def log(self) -> str:
        """Return what the server has printed and logged so far (for a failing test's message)."""
        text = ""
        for path in (os.path.join(self.root, "log", "console.log"), self.log_path):
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text += fh.read()
            except FileNotFoundError:
                pass
        return text

    def start(self):
        """Write the configuration, start the server and wait until it accepts connections."""
        if self.process is not None:
            raise RuntimeError("the server is running already")
        _require(self.needs)
        began = time.monotonic()
        self.root = tempfile.mkdtemp(prefix=self.prefix)
        # The servers' unprivileged workers (dovecot, www-data, nobody) must reach their files.
        os.chmod(self.root, 0o711)  # noqa: S103 - search only: no one else may list or write
        try:
            self._configure()
        except BaseException:
            self.close()
            raise
        with open(os.path.join(self._dir("log"), "console.log"), "wb") as console:
            self.process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready(timeout=15)
        except TimeoutError:
            output = self.log()
            self.close()
            raise RuntimeError(f"{self._command()[0]} did not start:\n{output}") from None
        self.started_in = time.monotonic() - began
        return self

    def _ready(self) -> bool:
        """Return whether the server answers yet."""
        try:
            wait_for_port(self.port, timeout=0.1)
        except TimeoutError:
            return False
        return True

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer in {timeout}s")
        raise TimeoutError(f"the server exited with status {self.process.returncode}")

    def close(self) -> None:
        """Stop the server and everything it started, and remove its files."""
        if self.process is not None:
            pgid = self.process.pid
            _stop(self.process)
            _wait_for_group_exit(pgid)
            self.process = None
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class Dovecot(_Server):
    """Dovecot IMAP that authenticates people by binding to the sandbox slapd as them.

    Plaintext logins are allowed (loopback only, no TLS). Dovecot's authentication cache is off
    unless `auth_cache_size` is given (e.g. "1M"), as a site that keeps it on would have it.
    Runs as root (Debian's dovecot and dovenull users do the unprivileged work); mail is kept
    in the temporary directory as "nobody".
    """

    prefix = "pwdrst-dovecot-"
    needs = (
        (DOVECOT, "dovecot-imapd"),
        ("/usr/lib/dovecot/libdovecot-ldap.so", "dovecot-ldap"),
        (DOVEADM, "dovecot-core"),
    )

    def __init__(self, slapd: Slapd, auth_cache_size: str = "0", auth_cache_ttl: str = "1 hour", debug: bool = False):
        super().__init__(slapd)
        self.auth_cache_size = auth_cache_size
        self.auth_cache_ttl = auth_cache_ttl
        self.debug = debug

    @property
    def config_path(self) -> str:
        return os.path.join(self.root, "dovecot.conf")

    def _command(self) -> list[str]:
        return [DOVECOT, "-F", "-c", self.config_path]

    def _configure(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the sandbox Dovecot runs as root (it hands work to the dovecot and dovenull users)")
        ldap_conf = os.path.join(self.root, "dovecot-ldap.conf.ext")
        with open(ldap_conf, "w", encoding="utf-8") as fh:
            fh.write(self._ldap_conf())
        os.chmod(ldap_conf, 0o600)
        mail = self._dir("mail")
        os.chown(mail, 65534, 65534)
        with open(self.config_path, "w", encoding="utf-8") as fh:
            fh.write(self._conf(ldap_conf, mail))

    def _ldap_conf(self) -> str:
        # Search for the entry as the service account, then bind as the person with the password
        # they typed (auth_bind): the directory, with its password policy, decides.
        # https://doc.dovecot.org/2.3/configuration_manual/authentication/ldap_bind/
        return f"""\
uris = {self.slapd.url}
ldap_version = 3
dn = {SERVICE_DN}
dnpass = {SERVICE_PASSWORD}
auth_bind = yes
base = {PEOPLE_DN}
scope = subtree
deref = never
pass_filter = (&{USER_FILTER}(uid=%u))
pass_attrs = uid=user
"""

    def _conf(self, ldap_conf: str, mail: str) -> str:
        debug = "yes" if self.debug else "no"
        return f"""\
# A private Dovecot for pwdrst's tests; nothing from /etc/dovecot is read.
instance_name = pwdrst-dovecot-{self.port}
base_dir = {self._dir("run")}
state_dir = {self._dir("state")}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
auth_verbose = {debug}
auth_debug = {debug}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# A refused login answers at once (the directory's ppolicy does the counting and locking).
auth_failure_delay = 0
auth_cache_size = {self.auth_cache_size}
auth_cache_ttl = {self.auth_cache_ttl}
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
passdb {{
  driver = ldap
  args = {ldap_conf}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={mail}/%n
}}
# Dovecot slows down an address after failed logins (up to 15 s); the tests fail logins on purpose
# from 127.0.0.1, so switch that off as documented:
# https://doc.dovecot.org/2.3/configuration_manual/authentication/auth_penalty/
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""

    def _ready(self) -> bool:
        # The greeting comes once a login process runs and reaches the auth process: an open port
        # alone is not enough (stopping Dovecot while its first login process starts takes 6 s).
        if not super()._ready():
            return False
        try:
            with imaplib.IMAP4("127.0.0.1", self.port, timeout=5) as imap:
                imap.noop()
        except (OSError, imaplib.IMAP4.error):
            return False
        return True

    def flush_cache(self, login: str | None = None) -> None:
        """Forget what the authentication cache holds for a login (or for everyone)."""
        args = [DOVEADM, "-c", self.config_path, "auth", "cache", "flush"]
        if login is not None:
            args.append(login)
        result = subprocess.run(args, capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise RuntimeError(f"doveadm auth cache flush failed: {result.stderr.strip()}")

    def login(self, user: str, password: str, mechanism: str = "PLAIN") -> bool:
        """Log in over IMAP; return whether the server accepted the password.

        The password travels as its UTF-8 bytes. PLAIN (RFC 4616) carries them base64-encoded in
        AUTHENTICATE; LOGIN sends them as a literal, since imaplib quotes LOGIN's arguments as
        ASCII only. Refusals other than a failed authentication, and connection problems, raise.
        """
        with imaplib.IMAP4("127.0.0.1", self.port, timeout=10) as imap:
            if mechanism == "PLAIN":
                blob = b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")
                try:
                    imap.authenticate("PLAIN", lambda _challenge: blob)
                except imaplib.IMAP4.error as exc:
                    answer = str(exc)
                else:
                    return True
            elif mechanism == "LOGIN":
                # imaplib sends the literal it is handed after the command's other arguments.
                imap.literal = password.encode("utf-8")
                quoted = '"' + user.replace("\\", "\\\\").replace('"', '\\"') + '"'
                typ, data = imap.xatom("LOGIN", quoted)
                if typ == "OK":
                    return True
                answer = data[-1].decode("utf-8", "replace")
            else:
                raise ValueError(f"unknown mechanism {mechanism!r}")
        if "[AUTHENTICATIONFAILED]" in answer:
            return False
        raise RuntimeError(f"the IMAP server refused the login: {answer}")


class ApacheLdap(_Server):
    """Apache httpd guarding /sso/ with Basic authentication against the sandbox slapd.

    mod_authnz_ldap searches for the person as the service account, then binds as the person
    with the password given. mod_ldap's caches are off unless `cache_ttl` (seconds) is given.
    """

    prefix = "pwdrst-apache-"
    needs = ((APACHE, "apache2-bin"), (f"{APACHE_MODULES}/mod_authnz_ldap.so", "apache2-bin"))
    path = "/sso/"

    def __init__(self, slapd: Slapd, cache_ttl: int | None = None):
        super().__init__(slapd)
        self.cache_ttl = cache_ttl

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def _command(self) -> list[str]:
        return [APACHE, "-d", self.root, "-f", os.path.join(self.root, "httpd.conf"), "-DFOREGROUND"]

    def _configure(self) -> None:
        htdocs = self._dir("htdocs/sso")
        with open(os.path.join(htdocs, "index.html"), "w", encoding="utf-8") as fh:
            fh.write("signed on\n")
        with open(os.path.join(self.root, "httpd.conf"), "w", encoding="utf-8") as fh:
            fh.write(self._conf())

    def _conf(self) -> str:
        modules = (
            "mpm_event",
            "authn_core",
            "authz_core",
            "auth_basic",
            "authz_user",
            "ldap",
            "authnz_ldap",
            "dir",
        )
        load = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in modules)
        if self.cache_ttl is None:
            # https://httpd.apache.org/docs/2.4/mod/mod_ldap.html#ldapcacheentries: 0 disables.
            cache = "LDAPCacheEntries 0\nLDAPOpCacheEntries 0"
        else:
            cache = f"LDAPCacheEntries 1024\nLDAPCacheTTL {self.cache_ttl}\nLDAPOpCacheTTL {self.cache_ttl}"
        run = self._dir("run")
        return f"""\
# A private Apache httpd for pwdrst's tests; nothing from /etc/apache2 is read.
ServerRoot {self.root}
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile {run}/httpd.pid
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {self.log_path}
LogLevel warn
{load}
User www-data
Group www-data
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
DocumentRoot {self.root}/htdocs
{cache}
<Location {self.path}>
  AuthType Basic
  AuthName "pwdrst sandbox sign-on"
  AuthBasicProvider ldap
  AuthLDAPURL "{self.slapd.url}/{PEOPLE_DN}?uid?sub?{USER_FILTER}"
  AuthLDAPBindDN "{SERVICE_DN}"
  AuthLDAPBindPassword "{SERVICE_PASSWORD}"
  Require valid-user
</Location>
"""

    def login(self, user: str, password: str) -> bool:
        """Ask for /sso/ with Basic credentials; return whether the server let the person in.

        The credentials are the base64 of the UTF-8 bytes (RFC 7617's charset="UTF-8"). Answers
        other than 200 and 401, and connection problems, raise.
        """
        token = base64.b64encode(user.encode("utf-8") + b":" + password.encode("utf-8")).decode("ascii")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", self.path, headers={"Authorization": f"Basic {token}"})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status == 200:
            return True
        if response.status == 401:
            return False
        raise RuntimeError(f"the sign-on answered {response.status} {response.reason}")
