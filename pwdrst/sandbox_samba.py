"""A private Samba AD domain controller on loopback, standing in for Active Directory in the tests.

Nothing here is used by the running application. `SambaDC` provisions a domain with Debian's
`samba-tool` once (a template tree, kept between runs: see `template`), fills a copy of it with
the sample people of `pwdrst.sandbox`, and runs `samba` in the foreground from that copy, serving LDAP on
127.0.0.1:389 and LDAPS on 127.0.0.1:636 with a certificate from its own CA. Those ports are fixed
(AD clients expect them, and samba offers no other), so one DC runs on a machine at a time; it
binds them as root, which the tests are.

Like `pwdrst.sandbox`, this module does not import ldap3: set-up goes through ldb-tools on the
database files, changes to a running DC through `ldapmodify` over LDAPS as the domain's
Administrator, so the tools that test pwdrst's LDAP code are not that code.

How the sample maps onto AD:
- each person is `CN=<display name>,OU=people,DC=uni,DC=example` with sAMAccountName and
  userPrincipalName (`<login>@uni.example`);
- `mail` (single-valued in AD) holds the first university address; `proxyAddresses` holds every
  university address the Exchange way (`SMTP:` before the primary one, `smtp:` before aliases);
- `otherMailbox` holds the private recovery address(es);
- the helpdesk, admins and protected groups are in OU=groups, with `member` values;
- the service account CN=pwdrst,OU=services has no rights but those delegated on OU=people
  (`samba-tool dsacl set`, see `delegation_command`): reset password, write otherMailbox, write
  lockoutTime.
"""

import atexit
import base64
import contextlib
import glob
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime

from pwdrst import sandbox
from pwdrst.sandbox import SAMPLE_PEOPLE, Person

SAMBA = "/usr/sbin/samba"
SAMBA_TOOL = "/usr/bin/samba-tool"
LDBMODIFY = "/usr/bin/ldbmodify"
LDBSEARCH = "/usr/bin/ldbsearch"
LDAPMODIFY = "/usr/bin/ldapmodify"
LDAPWHOAMI = "/usr/bin/ldapwhoami"
OPENSSL = "/usr/bin/openssl"

REALM = "UNI.EXAMPLE"
DOMAIN = "UNI"
MAIL_DOMAIN = "uni.example"
BASE_DN = "DC=uni,DC=example"
PEOPLE_DN = f"OU=people,{BASE_DN}"
GROUPS_DN = f"OU=groups,{BASE_DN}"
SERVICES_DN = f"OU=services,{BASE_DN}"
OTHER_DN = f"OU=other,{BASE_DN}"
ADMIN_DN = f"CN=Administrator,CN=Users,{BASE_DN}"
ADMIN_PASSWORD = "Sandbox-Admin-Secret-1"
SERVICE_LOGIN = "pwdrst"
SERVICE_DN = f"CN=pwdrst,{SERVICES_DN}"
SERVICE_PASSWORD = "Sandbox-Service-Secret-1"
HELPDESK_GROUP = f"CN=helpdesk,{GROUPS_DN}"
ADMIN_GROUP = f"CN=admins,{GROUPS_DN}"
PROTECTED_GROUP = f"CN=protected,{GROUPS_DN}"
RECOVERY_ATTRIBUTE = "otherMailbox"
ADDRESS_ATTRIBUTE = "proxyAddresses"
USER_FILTER = "(&(objectClass=user)(!(objectClass=computer)))"
LDAP_PORT = 389
LDAPS_PORT = 636
LDAPS_URL = f"ldaps://127.0.0.1:{LDAPS_PORT}"

# The sandbox's OpenLDAP group DNs (Person.groups) and their AD counterparts.
GROUPS = {
    sandbox.HELPDESK_GROUP: HELPDESK_GROUP,
    sandbox.ADMIN_GROUP: ADMIN_GROUP,
    sandbox.PROTECTED_GROUP: PROTECTED_GROUP,
}

# Schema and extended-right GUIDs (the same in every AD forest: [MS-ADA2], [MS-ADTS] 5.1.3.2.1).
USER_CLASS = "bf967aba-0de6-11d0-a285-00aa003049e2"
RESET_PASSWORD_RIGHT = "00299570-246d-11d0-a768-00aa006e0529"  # User-Force-Change-Password
OTHER_MAILBOX = "0296c123-40da-11d1-a9c0-0000f80367c1"
LOCKOUT_TIME = "28630ebf-41d5-11d1-a9c1-0000f80367c1"

# Samba's private control that lets a local (system) caller set pwdLastSet to any value: meant for
# importing accounts, used here to date a password in the past (DSDB_CONTROL_PASSWORD_BYPASS_LAST_SET).
BYPASS_LAST_SET = "local_oid:1.3.6.1.4.1.7165.4.3.20:0"

# The domain's password settings in the sandbox, in seconds where they are durations. Length,
# history and lockout match the OpenLDAP sandbox's policy; no minimum age, so tests may change a
# password twice; a maximum age, so that `expire` can date a password beyond it.
PASSWORD_SETTINGS = {
    "min_length": sandbox.POLICY_MIN_LENGTH,
    "complexity": True,
    "history_length": sandbox.POLICY_HISTORY,
    "min_age": 0,
    "max_age": 365 * 86400,
    "lockout_threshold": sandbox.POLICY_MAX_FAILURE,
    "lockout_duration": 900,
    "lockout_window": 300,
}

# AD stores durations as negative counts of 100 ns; this value means "never" (or "until unlocked").
NEVER = -0x8000000000000000
_TICKS = 10_000_000
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


class SambaNotInstalled(RuntimeError):
    """Samba's programs are missing from this machine."""


def missing_parts() -> list[str]:
    """Return what SambaDC needs that this machine lacks (programs and Samba's modules)."""
    programs = (SAMBA, SAMBA_TOOL, LDBMODIFY, LDBSEARCH, LDAPMODIFY, LDAPWHOAMI, OPENSSL)
    missing = [path for path in programs if not os.access(path, os.X_OK)]
    modules = {
        "samba-ad-provision": "/usr/share/samba/setup/provision.ldif",
        "samba-dsdb-modules": "/usr/lib/*/samba/ldb/samba_dsdb.so",
        "samba-vfs-modules": "/usr/lib/*/samba/vfs/acl_xattr.so",
    }
    missing += [package for package, pattern in modules.items() if not glob.glob(pattern)]
    return missing


def interval(seconds: float | None) -> int:
    """Return a duration as AD stores it (negative 100 ns units; None means never)."""
    return NEVER if seconds is None else -round(seconds * _TICKS)


def filetime(moment: datetime) -> int:
    """Return a moment as AD stores it (100 ns units since 1601, as in pwdLastSet)."""
    delta = moment - _FILETIME_EPOCH
    return (delta.days * 86400 + delta.seconds) * _TICKS + delta.microseconds * 10


def quoted_password(password: str) -> bytes:
    """Return a password as AD takes it in unicodePwd: in double quotes, UTF-16LE."""
    return f'"{password}"'.encode("utf-16-le")


def rdn_value(value: str) -> str:
    """Escape a value for use in an RDN (RFC 4514)."""
    escaped = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def ldif_value(name: str, value: str | bytes) -> str:
    """Return one LDIF line, base64-encoded where LDIF requires it (bytes always)."""
    if isinstance(value, bytes):
        return f"{name}:: {base64.b64encode(value).decode('ascii')}"
    return sandbox.ldif_value(name, value)


def person_ldif(person: Person, dn: str) -> str:
    """Return the LDIF add record of a person as an AD user."""
    primary, *aliases = person.mail
    lines = [
        ldif_value("dn", dn),
        "changetype: add",
        "objectClass: user",
        ldif_value("sAMAccountName", person.uid),
        ldif_value("userPrincipalName", f"{person.uid}@{MAIL_DOMAIN}"),
        ldif_value("givenName", person.given_name),
        ldif_value("sn", person.surname),
        ldif_value("displayName", person.display_name),
        ldif_value("mail", primary),
        ldif_value(ADDRESS_ATTRIBUTE, f"SMTP:{primary}"),
        *(ldif_value(ADDRESS_ATTRIBUTE, f"smtp:{alias}") for alias in aliases),
        *(ldif_value(RECOVERY_ATTRIBUTE, address) for address in person.recovery),
        ldif_value("unicodePwd", quoted_password(person.password)),
        "userAccountControl: 512",  # a normal, enabled account
    ]
    for name, values in person.extra.items():
        lines += [ldif_value(name, v) for v in values]
    return "\n".join(lines) + "\n"


def member_ldif(group_dn: str, member_dn: str) -> str:
    """Return the LDIF record adding a member to a group."""
    return f"{ldif_value('dn', group_dn)}\nchangetype: modify\nadd: member\n{ldif_value('member', member_dn)}\n"


def base_ldif() -> str:
    """Return the OUs, the groups and the service account (without rights yet)."""
    records = [
        f"dn: {dn}\nchangetype: add\nobjectClass: organizationalUnit\n"
        for dn in (PEOPLE_DN, GROUPS_DN, SERVICES_DN, OTHER_DN)
    ]
    for dn in (HELPDESK_GROUP, ADMIN_GROUP, PROTECTED_GROUP):
        name = dn.split(",", 1)[0][3:]
        records.append(f"dn: {dn}\nchangetype: add\nobjectClass: group\nsAMAccountName: {name}\n")
    records.append(
        "\n".join(
            [
                f"dn: {SERVICE_DN}",
                "changetype: add",
                "objectClass: user",
                f"sAMAccountName: {SERVICE_LOGIN}",
                "description: pwdrst: resets passwords in OU=people, by delegated rights only",
                ldif_value("unicodePwd", quoted_password(SERVICE_PASSWORD)),
                "userAccountControl: 66048",  # normal account, password never expires
            ]
        )
        + "\n"
    )
    return "\n".join(records)


def settings_ldif(**settings) -> str:
    """Return the LDIF change of the domain's password settings (PASSWORD_SETTINGS' names)."""
    unknown = set(settings) - set(PASSWORD_SETTINGS)
    if unknown:
        raise TypeError(f"unknown password settings: {', '.join(sorted(unknown))}")
    attributes = {
        "min_length": ("minPwdLength", int),
        # pwdProperties bit 1 is DOMAIN_PASSWORD_COMPLEX; the sandbox sets no other bit.
        "complexity": ("pwdProperties", lambda on: 1 if on else 0),
        "history_length": ("pwdHistoryLength", int),
        "min_age": ("minPwdAge", interval),
        "max_age": ("maxPwdAge", lambda s: interval(s or None)),
        "lockout_threshold": ("lockoutThreshold", int),
        "lockout_duration": ("lockoutDuration", interval),
        "lockout_window": ("lockOutObservationWindow", interval),
    }
    lines = [f"dn: {BASE_DN}", "changetype: modify"]
    for key, value in settings.items():
        name, convert = attributes[key]
        lines += [f"replace: {name}", f"{name}: {convert(value)}", "-"]
    return "\n".join(lines) + "\n"


def delegation_sddl(service_sid: str) -> str:
    """Return the ACEs that delegate the service account's rights over the users below an OU."""
    # OA = object ACE, CIIO = inherited by the objects below only, CR = control access (an
    # extended right), WP = write property; the last GUID but one limits each to user objects.
    return (
        f"(OA;CIIO;CR;{RESET_PASSWORD_RIGHT};{USER_CLASS};{service_sid})"
        f"(OA;CIIO;WP;{OTHER_MAILBOX};{USER_CLASS};{service_sid})"
        f"(OA;CIIO;WP;{LOCKOUT_TIME};{USER_CLASS};{service_sid})"
    )


def delegation_command(service_sid: str, url: str) -> list[str]:
    """Return the samba-tool command that delegates the service account's rights on OU=people."""
    return [
        SAMBA_TOOL,
        "dsacl",
        "set",
        "-H",
        url,
        f"--objectdn={PEOPLE_DN}",
        f"--sddl={delegation_sddl(service_sid)}",
    ]


def smb_conf(root: str) -> str:
    """Return the smb.conf of a DC whose files are under root."""
    tls = os.path.join(root, "tls")
    return f"""\
[global]
	netbios name = DC
	realm = {REALM}
	workgroup = {DOMAIN}
	server role = active directory domain controller
	# Only the LDAP server: no SMB, Kerberos, DNS or replication, so nothing else listens.
	server services = ldap
	interfaces = lo
	bind interfaces only = yes
	private dir = {root}/private
	state directory = {root}/state
	cache directory = {root}/cache
	lock directory = {root}
	binddns dir = {root}/bind-dns
	log file = {root}/log.%m
	log level = 0
	idmap_ldb:use rfc2307 = yes
	# By default an old password still authenticates for 60 minutes after a change (NTLM only,
	# but say it plainly): the tests expect a change to take effect at once.
	old password allowed period = 0
	tls enabled = yes
	tls keyfile = {tls}/server.key
	tls certfile = {tls}/server.pem
	tls cafile = {tls}/ca.pem
"""


def _run(args, input=None, env=None, what=None) -> str:
    result = subprocess.run(args, input=input, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise RuntimeError(f"{what or os.path.basename(args[0])} failed ({result.returncode}): {output}")
    return result.stdout


def make_certificates(directory: str) -> None:
    """Create a CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
    os.makedirs(directory, exist_ok=True)

    def path(name):
        return os.path.join(directory, name)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _run(
        [OPENSSL, "req", "-x509", *ec, "-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "30"]
        + ["-subj", "/O=pwdrst sandbox/CN=pwdrst sandbox CA"]
        + ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        what="openssl (CA)",
    )
    _run(
        [OPENSSL, "req", "-new", *ec, "-keyout", path("server.key"), "-out", path("server.csr")]
        + ["-subj", "/O=pwdrst sandbox/CN=localhost"],
        what="openssl (server key)",
    )
    with open(path("server.ext"), "w", encoding="ascii") as fh:
        fh.write(
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
        )
    _run(
        [OPENSSL, "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key")]
        + ["-CAcreateserial", "-days", "30", "-extfile", path("server.ext"), "-out", path("server.pem")],
        what="openssl (server certificate)",
    )
    # samba refuses a key file that others may read.
    for name in ("ca.key", "server.key"):
        os.chmod(path(name), 0o600)


def _sam(root: str) -> str:
    return os.path.join(root, "private", "sam.ldb")


def ldb_modify(root: str, ldif: str, controls=()) -> None:
    """Apply LDIF change records to the DC's database files directly (as the system, no ACLs)."""
    args = [LDBMODIFY, "-H", _sam(root), *(f"--controls={c}" for c in controls)]
    _run(args, input=ldif, what="ldbmodify")


def ldb_search(root: str, ldap_filter: str, attribute: str, base: str = BASE_DN) -> list[str]:
    """Return the values of one attribute of the entries matching a filter, read from the files."""
    out = _run([LDBSEARCH, "-H", _sam(root), "-b", base, ldap_filter, attribute], what="ldbsearch")
    prefix = f"{attribute.lower()}: "
    return [line[len(prefix) :] for line in out.splitlines() if line.lower().startswith(prefix)]


def build_template(root: str) -> None:
    """Provision a domain under root and add the OUs, groups, service account and its rights."""
    os.makedirs(root, exist_ok=True)
    _run(
        [SAMBA_TOOL, "domain", "provision", "--configfile=/dev/null"]
        + ["--use-rfc2307", "--server-role=dc", "--dns-backend=NONE", f"--targetdir={root}"]
        + [f"--realm={REALM}", f"--domain={DOMAIN}", "--host-name=dc", f"--adminpass={ADMIN_PASSWORD}"]
        + ["--option=interfaces = lo", "--option=bind interfaces only = yes", "--option=server services = ldap"],
        what="samba-tool domain provision",
    )
    with open(os.path.join(root, "etc", "smb.conf"), "w", encoding="utf-8") as fh:
        fh.write(smb_conf(root))
    ldb_modify(root, base_ldif() + "\n" + settings_ldif(**PASSWORD_SETTINGS))
    (service_sid,) = ldb_search(root, f"(sAMAccountName={SERVICE_LOGIN})", "objectSid")
    command = delegation_command(service_sid, _sam(root))
    _run([*command, "-s", os.path.join(root, "etc", "smb.conf")], what="samba-tool dsacl set")


def _cache_directory() -> str | None:
    value = os.environ.get("PWDRST_TEST_SAMBA_CACHE")
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "no", "none") else value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pwdrst")


def _template_key() -> str:
    # A template is good for as long as samba and the code that built it stay the same.
    version = _run([SAMBA, "--version"], what="samba --version").strip()
    with open(__file__, "rb") as fh:
        source = fh.read()
    return hashlib.sha256(version.encode() + b"\0" + source).hexdigest()[:16]


_template_lock = threading.Lock()
_template: str | None = None


def template() -> str:
    """Return the directory of a provisioned template, building it if there is none yet.

    Provisioning takes 7 seconds on an idle machine (half a minute on a busy one), so the
    template is kept between runs under ~/.cache/pwdrst, keyed by samba's version and this
    file's source. PWDRST_TEST_SAMBA_CACHE names another directory, or "off" for a template
    of this process's own, removed at exit.
    """
    global _template
    with _template_lock:
        if _template is not None:
            return _template
        cache = _cache_directory()
        if cache is None:
            root = tempfile.mkdtemp(prefix="pwdrst-samba-template-")
            atexit.register(shutil.rmtree, root, True)
            build_template(root)
            _template = root
            return root
        os.makedirs(cache, exist_ok=True)
        final = os.path.join(cache, f"samba-template-{_template_key()}")
        if not os.path.isdir(final):
            # Built aside and renamed into place, so no reader ever sees half a template.
            building = tempfile.mkdtemp(prefix="building-samba-template-", dir=cache)
            try:
                build_template(building)
                os.rename(building, final)
            except OSError:
                if not os.path.isdir(final):
                    raise
            finally:
                shutil.rmtree(building, ignore_errors=True)
        os.utime(final)
        # Other worktrees may be using their own template now: only drop those unused for a day.
        for name in os.listdir(cache):
            path = os.path.join(cache, name)
            if "samba-template-" in name and path != final and os.path.getmtime(path) < time.time() - 86400:
                shutil.rmtree(path, ignore_errors=True)
        _template = final
        return final


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class SambaDC:
    """A private Samba AD domain controller on 127.0.0.1:389/636 with the sample people."""

    def __init__(self, people=SAMPLE_PEOPLE, max_runtime: int = 4 * 3600):
        self.people = tuple(people)
        # samba ends itself after this many seconds: a DC orphaned by a killed test run would
        # otherwise keep ports 389 and 636 (it runs in its own session, as slapd does).
        self.max_runtime = max_runtime
        self.root: str | None = None
        self.process: subprocess.Popen | None = None
        self._log = None
        self.dns: dict[str, str] = {}
        self.settings = dict(PASSWORD_SETTINGS)
        self.started_in: float | None = None

    # -- life cycle

    @property
    def ca_file(self) -> str:
        return os.path.join(self.root, "tls", "ca.pem")

    @property
    def url(self) -> str:
        return LDAPS_URL

    def start(self) -> "SambaDC":
        """Copy the template, add the people, start samba and wait until LDAPS answers."""
        missing = missing_parts()
        if missing:
            raise SambaNotInstalled(f"Samba is not installed ({', '.join(missing)} missing): run scripts/setup.sh")
        if _port_in_use(LDAPS_PORT) or _port_in_use(LDAP_PORT):
            raise RuntimeError(
                f"something already listens on 127.0.0.1:{LDAP_PORT} or {LDAPS_PORT} (a DC of another test run? "
                f"`ss -ltnp 'sport = :{LDAPS_PORT}'` names it): one DC runs on a machine at a time"
            )
        began = time.monotonic()
        source = template()
        self.root = tempfile.mkdtemp(prefix="pwdrst-samba-")
        shutil.copytree(source, self.root, dirs_exist_ok=True)
        make_certificates(os.path.join(self.root, "tls"))
        with open(os.path.join(self.root, "etc", "smb.conf"), "w", encoding="utf-8") as fh:
            fh.write(smb_conf(self.root))
        with open(os.path.join(self.root, "admin.pw"), "w", encoding="utf-8") as fh:
            fh.write(ADMIN_PASSWORD)
        ldb_modify(self.root, "\n".join(self._people_ldif(self.people)))
        self._log = open(os.path.join(self.root, "samba.log"), "wb")  # noqa: SIM115 - lives as long as the process
        # -i keeps samba in the foreground, so this object owns it; the single process model
        # keeps it to one process (the default forks a master and prefork workers).
        self.process = subprocess.Popen(
            [SAMBA, "-i", "-M", "single", f"--maximum-runtime={self.max_runtime}"]
            + ["-s", os.path.join(self.root, "etc", "smb.conf")],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_for_ldaps()
        except BaseException:
            self.close()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _wait_for_ldaps(self, timeout: float = 30.0) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"samba exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", LDAPS_PORT), timeout=1) as raw:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                        return
            except (OSError, ssl.SSLError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"samba's LDAPS did not answer in {timeout}s: {self.log_tail()}") from None
                time.sleep(0.05)

    def log_tail(self, size: int = 2000) -> str:
        """Return the end of samba's own output (for error messages)."""
        try:
            with open(os.path.join(self.root, "samba.log"), "rb") as fh:
                return fh.read()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop samba."""
        sandbox.terminate(self.process)
        self.process = None
        if self._log:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop samba and remove its files."""
        self.stop()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "SambaDC":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def pids(self) -> list[int]:
        """Return the ids of samba's processes (the foreground one and any it forked)."""
        if not self.process:
            return []
        found = [self.process.pid]
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[1]) in found and int(name) not in found:
                    found.append(int(name))
        return found

    def rss_kib(self) -> int:
        """Return the resident memory of samba's processes together, in KiB."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    # -- people

    def dn(self, who) -> str:
        """Return the DN of a person given as a Person, a login, or a DN."""
        if isinstance(who, Person):
            who = who.uid
        if "=" in who:
            return who
        return self.dns[who]

    def _people_ldif(self, people, ou: str = PEOPLE_DN) -> list[str]:
        records = []
        for person in people:
            dn = f"CN={rdn_value(person.display_name)},{ou}"
            if dn.lower() in {t.lower() for t in self.dns.values()}:
                # Two people with one name: AD needs another RDN; real domains add the login.
                dn = f"CN={rdn_value(f'{person.display_name} ({person.uid})')},{ou}"
            self.dns[person.uid] = dn
            records.append(person_ldif(person, dn))
            records += [member_ldif(GROUPS.get(g, g), dn) for g in person.groups]
        return records

    def modify(self, ldif: str) -> None:
        """Apply LDIF change records over LDAPS as the domain's Administrator (for set-up, never for the app)."""
        env = {**os.environ, "LDAPTLS_CACERT": self.ca_file, "LDAPTLS_REQCERT": "demand"}
        args = [LDAPMODIFY, "-x", "-H", self.url, "-D", ADMIN_DN, "-y", os.path.join(self.root, "admin.pw")]
        _run(args, input=ldif, env=env, what="ldapmodify")

    def add_person(self, person: Person, ou: str = PEOPLE_DN) -> Person:
        """Add a person (and their group memberships) to the running DC, in OU=people by default."""
        self.modify("\n".join(self._people_ldif([person], ou)))
        return person

    def set_password(self, who, password: str) -> None:
        """Set a password as the Administrator (a reset: the domain's length and complexity apply)."""
        self.modify(
            f"{ldif_value('dn', self.dn(who))}\nchangetype: modify\nreplace: unicodePwd\n"
            f"{ldif_value('unicodePwd', quoted_password(password))}\n"
        )

    def must_change(self, who) -> None:
        """Make the person change their password at the next logon (pwdLastSet=0)."""
        self.modify(f"{ldif_value('dn', self.dn(who))}\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: 0\n")

    def expire(self, who) -> None:
        """Date the person's password beyond the domain's maximum age, so it has expired."""
        max_age = self.settings["max_age"]
        if not max_age:
            raise ValueError("passwords never expire in this domain now (max_age is 0)")
        changed = filetime(datetime.now(UTC)) - (max_age + 86400) * _TICKS
        # AD lets nobody write pwdLastSet but 0 and -1; Samba's import control does, on the files.
        ldif = f"{ldif_value('dn', self.dn(who))}\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: {changed}\n"
        ldb_modify(self.root, ldif, controls=[BYPASS_LAST_SET])

    def lock(self, who) -> None:
        """Lock the account as failed logins do: bind with a wrong password until the threshold."""
        threshold = self.settings["lockout_threshold"]
        if not threshold:
            raise ValueError("accounts never lock in this domain now (lockout_threshold is 0)")
        env = {**os.environ, "LDAPTLS_CACERT": self.ca_file, "LDAPTLS_REQCERT": "demand"}
        args = [LDAPWHOAMI, "-x", "-H", self.url, "-D", self.dn(who), "-w", "Not-the-password-0"]
        for _ in range(threshold):
            subprocess.run(args, capture_output=True, env=env)

    def unlock(self, who) -> None:
        """Unlock the account as an administrator does (lockoutTime=0)."""
        self.modify(f"{ldif_value('dn', self.dn(who))}\nchangetype: modify\nreplace: lockoutTime\nlockoutTime: 0\n")

    # -- the domain

    def set_password_settings(self, **settings) -> None:
        """Change the domain's password settings (PASSWORD_SETTINGS' names; durations in seconds)."""
        self.modify(settings_ldif(**settings))
        self.settings.update(settings)

    def reset_password_settings(self) -> None:
        """Put the domain's password settings back to the sandbox's."""
        self.set_password_settings(**PASSWORD_SETTINGS)

    @contextlib.contextmanager
    def password_settings(self, **settings):
        """Change the domain's password settings for the duration of a with block."""
        before = {key: self.settings[key] for key in settings}
        self.set_password_settings(**settings)
        try:
            yield self
        finally:
            self.set_password_settings(**before)

    def app_settings(self, public_url: str, smtp_port: int) -> dict:
        """Return the settings of an app wired to this DC (LDAP_FLAVOUR=ad) and an SMTP server."""
        settings = sandbox.app_settings(self.url, smtp_port, public_url)
        settings.update(
            {
                "LDAP_FLAVOUR": "ad",
                "LDAP_URL": [self.url],
                "LDAP_START_TLS": False,
                "LDAP_CA_FILE": self.ca_file,
                "LDAP_BIND_DN": SERVICE_DN,
                "LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
                # People only: the service account can act on nobody else anyway.
                "LDAP_BASE_DN": PEOPLE_DN,
                "LDAP_USER_FILTER": USER_FILTER,
                # proxyAddresses values carry "smtp:"/"SMTP:" before the address.
                "LDAP_LOGIN_ATTRIBUTES": ["sAMAccountName", "mail", "userPrincipalName", ADDRESS_ATTRIBUTE],
                "LDAP_RECOVERY_ATTRIBUTE": RECOVERY_ATTRIBUTE,
                "LDAP_DISPLAY_NAME_ATTRIBUTE": "displayName",
                "LDAP_GROUP_MEMBER_ATTRIBUTE": "member",
                "LDAP_HELPDESK_GROUP": HELPDESK_GROUP,
                "LDAP_ADMIN_GROUP": ADMIN_GROUP,
                "LDAP_PROTECTED_GROUP": PROTECTED_GROUP,
                "LDAP_PASSWORD_POLICY_DN": None,
            }
        )
        return settings
