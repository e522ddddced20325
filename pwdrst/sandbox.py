"""Private OpenLDAP and SMTP servers on loopback, for the demo, the tests and the benchmarks.

Nothing here is used by the running application. `Slapd` builds a cn=config tree for Debian's
slapd in a temporary directory (mdb, ppolicy, ACLs, indexes) and loads people with slapadd;
`SmtpSink` is an aiosmtpd server that keeps every message it accepts. Neither imports ldap3:
changes to a running directory go through `ldapmodify` from ldap-utils.
"""

import base64
import email
import email.policy
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
LDAPMODIFY = "/usr/bin/ldapmodify"
MODULE_PATH = "/usr/lib/ldap"
SCHEMA_DIR = "/etc/ldap/schema"

BASE_DN = "dc=uni,dc=example"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
POLICIES_DN = f"ou=policies,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "sandbox-admin-secret"
SERVICE_DN = f"cn=pwdrst,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "sandbox-service-secret"
HELPDESK_GROUP = f"cn=helpdesk,{GROUPS_DN}"
ADMIN_GROUP = f"cn=admins,{GROUPS_DN}"
PROTECTED_GROUP = f"cn=protected,{GROUPS_DN}"
DEFAULT_POLICY = f"cn=default,{POLICIES_DN}"
RECOVERY_ATTRIBUTE = "recoveryMail"
MAIL_DOMAINS = ("uni.example", "student.uni.example")

# The directory's own policy: deliberately looser on length than the application's (which counts
# characters, 15 by default), so that the application's sentences are what people usually see,
# while the server still refuses what slips past (pwdMinLength counts bytes).
POLICY_MIN_LENGTH = 8
POLICY_HISTORY = 5
POLICY_MAX_FAILURE = 5


@dataclass(frozen=True)
class Person:
    """A sample person to load into the sandbox directory."""

    uid: str
    given_name: str
    surname: str
    password: str
    mail: tuple[str, ...]
    recovery: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE_DN}"

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.surname}"


SAMPLE_PEOPLE = (
    Person(
        "jkowalski",
        "Jan",
        "Kowalski",
        "Zielony-parasol-nad-Wisłą-7",
        ("jan.kowalski@uni.example", "jkowalski@uni.example", "jan.kowalski@student.uni.example"),
        ("jan.kowalski@private.example",),
    ),
    Person(
        "anowak",
        "Anna",
        "Nowak",
        "Cicha-sowa-liczy-gwiazdy-42",
        ("anna.nowak@uni.example", "anowak@uni.example"),
        ("anna.nowak@private.example",),
    ),
    Person(
        "pwisniewski",
        "Piotr",
        "Wiśniewski",
        "Rower-bez-dzwonka-na-moście-9",
        ("piotr.wisniewski@uni.example", "pwisniewski@uni.example"),
    ),
    Person(
        "mzielinska",
        "Maria",
        "Zielińska",
        "Kubek-herbaty-o-północy-31",
        ("maria.zielinska@uni.example", "mzielinska@uni.example", "pomoc@uni.example"),
        ("maria.zielinska@private.example",),
        groups=(HELPDESK_GROUP,),
    ),
    Person(
        "kwojcik",
        "Krzysztof",
        "Wójcik",
        "Szary-kot-śpi-na-serwerze-5",
        ("krzysztof.wojcik@uni.example", "kwojcik@uni.example"),
        ("krzysztof.wojcik@private.example",),
        groups=(ADMIN_GROUP, PROTECTED_GROUP),
    ),
    # Two accounts that share one alias: a data fault the tools must never guess through.
    Person(
        "tlewandowski",
        "Tomasz",
        "Lewandowski",
        "Lampa-w-oknie-na-strychu-88",
        ("tomasz.lewandowski@uni.example", "t.lewandowski@uni.example"),
        ("tomasz.lewandowski@private.example",),
    ),
    Person(
        "tlewandowski2",
        "Teresa",
        "Lewandowska",
        "Morska-fala-i-mewa-w-maju-3",
        ("teresa.lewandowska@uni.example", "t.lewandowski@uni.example"),
        ("teresa.lewandowska@private.example",),
    ),
)


def app_settings(ldap_url: str, smtp_port: int, public_url: str) -> dict:
    """Return the settings of an app wired to a sandbox directory and SMTP server."""
    return {
        "PUBLIC_URL": public_url,
        "ORGANISATION_NAME": "Uniwersytet Przykładowy",
        "SUPPORT_EMAIL": "pomoc@uni.example",
        "LDAP_URL": [ldap_url],
        "LDAP_BIND_DN": SERVICE_DN,
        "LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "LDAP_BASE_DN": BASE_DN,
        "LDAP_RECOVERY_ATTRIBUTE": RECOVERY_ATTRIBUTE,
        "LDAP_HELPDESK_GROUP": HELPDESK_GROUP,
        "LDAP_ADMIN_GROUP": ADMIN_GROUP,
        "LDAP_PROTECTED_GROUP": PROTECTED_GROUP,
        "LDAP_PASSWORD_POLICY_DN": DEFAULT_POLICY,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_port,
        "MAIL_DEFAULT_SENDER": "Hasła <hasla@uni.example>",
    }


def as_environment(settings: dict) -> dict[str, str]:
    """Return settings as PWDRST_* environment variables (lists as JSON)."""
    return {
        "PWDRST_" + key: json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
        for key, value in settings.items()
    }


def account_of(person: Person):
    """Return the Account the directory layer would read for a sample person (for the policy alone)."""
    from pwdrst.directory import Account

    return Account(
        dn=person.dn,
        login=person.uid,
        display_name=person.display_name,
        given_name=person.given_name,
        surname=person.surname,
        addresses=person.mail,
        recovery_addresses=person.recovery,
        locked=False,
        password_expired=False,
        password_changed_at=None,
        fingerprint="",
    )


def terminate(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Ask a server process to stop (SIGTERM); kill it if it has not within timeout seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def ssha(password: str) -> str:
    """Hash a password the way slapd's {SSHA} scheme does."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()  # noqa: S324 - slapd's {SSHA} is SHA-1
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def ldif_value(name: str, value: str) -> str:
    """Return one LDIF line, base64-encoded where LDIF requires it."""
    if value and value.isascii() and value.isprintable() and value[0] not in " :<" and value[-1] != " ":
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"


def person_ldif(person: Person) -> str:
    """Return the LDIF entry of a person, with a pre-hashed password."""
    lines = [
        f"dn: {person.dn}",
        "objectClass: inetOrgPerson",
        "objectClass: pwdrstPerson",
        ldif_value("uid", person.uid),
        ldif_value("cn", person.display_name),
        ldif_value("sn", person.surname),
        ldif_value("givenName", person.given_name),
        ldif_value("displayName", person.display_name),
        ldif_value("userPassword", ssha(person.password)),
    ]
    lines += [ldif_value("mail", m) for m in person.mail]
    lines += [ldif_value(RECOVERY_ATTRIBUTE, m) for m in person.recovery]
    for name, values in person.extra.items():
        lines += [ldif_value(name, v) for v in values]
    return "\n".join(lines) + "\n"


def config_ldif(root: str, port: int) -> str:
    """Return the cn=config tree of a private slapd."""
    schema_includes = "\n".join(
        f"include: file://{SCHEMA_DIR}/{name}.ldif" for name in ("core", "cosine", "inetorgperson")
    )
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid
olcLogLevel: none

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_PATH}
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schema_includes}

dn: cn=pwdrst,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: pwdrst
olcAttributeTypes: ( 1.3.6.1.4.1.99999.41.1.1 NAME '{RECOVERY_ATTRIBUTE}'
  DESC 'private address for password reset mail; not a subtype of mail on purpose'
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{{256}} )
olcObjectClasses: ( 1.3.6.1.4.1.99999.41.2.1 NAME 'pwdrstPerson' AUXILIARY
  MAY {RECOVERY_ATTRIBUTE} )

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 1000

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {BASE_DN}
olcDbDirectory: {root}/data
olcDbMaxSize: 1073741824
olcRootDN: {ADMIN_DN}
olcRootPW: {ADMIN_PASSWORD}
olcDbIndex: objectClass eq
olcDbIndex: uid eq,sub
olcDbIndex: mail eq,sub
olcDbIndex: {RECOVERY_ATTRIBUTE} eq
olcDbIndex: cn,displayName eq,sub
olcDbIndex: member eq
# People change their own password; the service account resets it with write, never manage:
# ppolicy treats manage as a password administrator, which skips the quality checks and sets
# pwdReset (forcing yet another change at the next login).
olcAccess: {{0}}to attrs=userPassword
  by self write
  by dn.exact="{SERVICE_DN}" write
  by anonymous auth
  by * none
olcAccess: {{1}}to attrs={RECOVERY_ATTRIBUTE}
  by dn.exact="{SERVICE_DN}" write
  by self read
  by * none
olcAccess: {{2}}to *
  by dn.exact="{SERVICE_DN}" read
  by self read
  by * none

dn: olcOverlay={{0}}ppolicy,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{0}}ppolicy
olcPPolicyDefault: {DEFAULT_POLICY}
olcPPolicyHashCleartext: TRUE
olcPPolicyUseLockout: TRUE
"""


def base_ldif() -> str:
    """Return the suffix, organisational units, service account and default policy."""
    return f"""\
dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
dc: uni
o: Uniwersytet Przykladowy

dn: {PEOPLE_DN}
objectClass: organizationalUnit
ou: people

dn: {GROUPS_DN}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{BASE_DN}
objectClass: organizationalUnit
ou: services

dn: {POLICIES_DN}
objectClass: organizationalUnit
ou: policies

dn: {SERVICE_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: pwdrst
userPassword: {ssha(SERVICE_PASSWORD)}

dn: {DEFAULT_POLICY}
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMinLength: {POLICY_MIN_LENGTH}
pwdCheckQuality: 2
pwdInHistory: {POLICY_HISTORY}
pwdLockout: TRUE
pwdMaxFailure: {POLICY_MAX_FAILURE}
pwdLockoutDuration: 900
pwdFailureCountInterval: 300
pwdAllowUserChange: TRUE
pwdMustChange: FALSE
pwdSafeModify: FALSE
"""


def groups_ldif(people) -> str:
    """Return the helpdesk, admin and protected groups with their members."""
    blocks = []
    for group_dn in (HELPDESK_GROUP, ADMIN_GROUP, PROTECTED_GROUP):
        members = [p.dn for p in people if group_dn in p.groups] or [ADMIN_DN]
        cn = group_dn.split(",", 1)[0].split("=", 1)[1]
        blocks.append(
            "\n".join([f"dn: {group_dn}", "objectClass: groupOfNames", f"cn: {cn}"])
            + "\n"
            + "\n".join(f"member: {m}" for m in members)
            + "\n"
        )
    return "\n".join(blocks)


class Slapd:
    """A private slapd on a free loopback port, configured and filled in a temporary directory."""

    def __init__(self, people=SAMPLE_PEOPLE, port: int | None = None, root: str | None = None):
        self.people = tuple(people)
        self.port = port or free_port()
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="pwdrst-slapd-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def setup(self) -> None:
        """Write the configuration and load the base entries and the people with slapadd."""
        confdir = os.path.join(self.root, "slapd.d")
        os.makedirs(confdir)
        os.makedirs(os.path.join(self.root, "data"))
        self._slapadd(["-n0", "-F", confdir], config_ldif(self.root, self.port))
        data = [base_ldif(), groups_ldif(self.people)]
        data += [person_ldif(p) for p in self.people]
        self._slapadd(["-F", confdir, "-b", BASE_DN, "-q"], "\n".join(data))

    def _slapadd(self, args, ldif: str) -> None:
        path = os.path.join(self.root, "load.ldif")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(ldif)
        result = subprocess.run([SLAPADD, *args, "-l", path], capture_output=True, text=True)
        os.unlink(path)
        if result.returncode != 0:
            raise RuntimeError(f"slapadd failed: {result.stderr.strip()}")

    def start(self) -> "Slapd":
        """Start the server (setting it up first if needed) and wait until it accepts connections."""
        if not os.path.isdir(os.path.join(self.root, "slapd.d")):
            self.setup()
        # -d 0 keeps slapd in the foreground, so this object owns the process.
        self.process = subprocess.Popen(
            [SLAPD, "-d", "0", "-h", f"ldap://127.0.0.1:{self.port}/", "-F", os.path.join(self.root, "slapd.d")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server; its data stays for a later start()."""
        terminate(self.process)
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def close(self) -> None:
        """Stop the server and remove its files."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def modify(self, ldif: str, relax: bool = False) -> None:
        """Apply an LDIF change as the directory's root DN (for set-up, never for the app)."""
        args = [LDAPMODIFY, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD]
        if relax:
            args += ["-e", "relax"]
        result = subprocess.run(args, input=ldif, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ldapmodify failed: {result.stderr.strip()}")

    def add_person(self, person: Person) -> Person:
        """Add a person to the running directory."""
        self.modify(person_ldif(person).replace("\n", "\nchangetype: add\n", 1))
        for group_dn in person.groups:
            self.modify(f"dn: {group_dn}\nchangetype: modify\nadd: member\nmember: {person.dn}\n")
        return person

    def add_policy(self, name: str, **attributes) -> str:
        """Add a password policy entry (pwdAttribute given) and return its DN."""
        dn = f"cn={name},{POLICIES_DN}"
        lines = [f"dn: {dn}", "changetype: add", "objectClass: device", "objectClass: pwdPolicy", f"cn: {name}"]
        lines.append("pwdAttribute: userPassword")
        lines += [f"{key}: {value}" for key, value in attributes.items()]
        self.modify("\n".join(lines) + "\n")
        return dn

    def expire_password(self, dn: str, policy_dn: str, changed: str = "20000101000000Z") -> None:
        """Put the account under a policy and date its last change (far in the past by default)."""
        self.modify(
            f"dn: {dn}\nchangetype: modify\nreplace: pwdPolicySubentry\npwdPolicySubentry: {policy_dn}\n-\n"
            f"replace: pwdChangedTime\npwdChangedTime: {changed}\n",
            relax=True,
        )

    def set_policy(self, dn: str, policy_dn: str) -> None:
        """Put the account under another password policy."""
        self.modify(f"dn: {dn}\nchangetype: modify\nreplace: pwdPolicySubentry\npwdPolicySubentry: {policy_dn}\n")

    def __enter__(self) -> "Slapd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class SmtpSink:
    """A real SMTP server on loopback (aiosmtpd) that keeps every message it accepts."""

    def __init__(self, port: int | None = None, delay: float = 0.0, echo=None, keep: bool = True):
        self.port = port or free_port()
        self.delay = delay
        self.echo = echo
        # keep=False only counts (the benchmark's server should cost as little CPU as it can).
        self.keep = keep
        self.count = 0
        self.messages: list[email.message.EmailMessage] = []
        self._cond = threading.Condition()
        self._controller = None

    def start(self) -> "SmtpSink":
        """Start accepting mail."""
        from aiosmtpd.controller import Controller

        # aiosmtpd logs every line of DATA at DEBUG under "mail.log". That is the receiving mail
        # server's log, not pwdrst's; in the tests it shares our process and would be captured with
        # the app's own logs, so keep it to INFO.
        logging.getLogger("mail.log").setLevel(logging.INFO)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop accepting mail (connections are refused until start() again)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def _deliver(self, message) -> None:
        with self._cond:
            self.count += 1
            if message is not None:
                self.messages.append(message)
            self._cond.notify_all()
        if self.echo:
            self.echo(message)

    def wait_for(self, count: int = 1, timeout: float = 10.0, to: str | None = None):
        """Wait until `count` messages (to `to`, if given) have arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if to is None or to in m.get("To", "")]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(found)} of {count} messages arrived in {timeout}s")
                self._cond.wait(remaining)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._cond:
            self.messages.clear()

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        if not self.sink.keep:
            self.sink._deliver(None)
            return "250 Message accepted"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.sink._deliver(message)
        return "250 Message accepted"
