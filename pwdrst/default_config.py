"""Default settings of pwdrst, each documented.

Every key X may be set in the site file named by PWDRST_CONFIG (a Python file) or as the
environment variable PWDRST_X (lists as JSON arrays or comma-separated; booleans as true/false).
Secrets default to None and must be set. A missing or invalid setting stops start-up with a
message that names it.
"""

# -- The application ---------------------------------------------------------------------------

# Key that signs sessions and links. Required; at least 32 characters.
SECRET_KEY = None

# Earlier keys that still verify sessions and links (for one link lifetime after a rotation).
SECRET_KEY_FALLBACKS = []

# The public base URL, e.g. "https://panel.uni.example/pwdrst". Every link in mail is built from
# it, never from the request's Host header. Required.
PUBLIC_URL = None

# The organisation's name, shown on every page and in every mail.
ORGANISATION_NAME = "Uczelnia"

# URL of the organisation's logo (shown in the page header), or None. The Content-Security-Policy
# allows images from this site only: prefer ORGANISATION_LOGO_FILE.
ORGANISATION_LOGO_URL = None

# Path of the organisation's logo (SVG, PNG or JPEG), served by the app at /theme/logo and shown in
# the page header and the mails; or None. Looks best light on the primary colour, about 40 px high.
ORGANISATION_LOGO_FILE = None

# Path of the favicon (SVG, PNG or ICO), served at /theme/favicon; or None for the browser's default.
ORGANISATION_FAVICON_FILE = None

# The primary colour as #rrggbb: the header, buttons and links, in the pages and the mails. White text
# sits on it, so the app refuses to start with a colour whose contrast with white is below 4.5:1.
ORGANISATION_COLOUR = "#0b4f8a"

# Links in every page's footer, as [label, URL] pairs (http, https or mailto), e.g.
# [["Polityka prywatności", "https://uni.example/privacy"], ["Deklaracja dostępności", "https://..."]].
# A label may also name its text in each language of LANGUAGES, shown in the page's language:
# [[{"pl": "Polityka prywatności", "en": "Privacy policy"}, "https://uni.example/privacy"]].
ORGANISATION_FOOTER_LINKS = []

# A folder of the site's own templates, or None. A template there overrides the built-in one of the
# same name (e.g. main/index.html, or base.html for the whole frame); the rest stay built-in.
THEME_FOLDER = None

# The helpdesk's address, given wherever a person may need help. Required.
SUPPORT_EMAIL = None

# The helpdesk's phone number, shown beside the address, or None.
SUPPORT_PHONE = None

# Time zone of the times shown in pages and mail.
TIMEZONE = "Europe/Warsaw"

# Languages offered; the first is the default when the browser asks for none of them.
LANGUAGES = ["pl", "en"]

# Largest request body accepted, in bytes. A form is a few hundred; this leaves room for an
# absurdly long password to be refused by the policy with a sentence rather than by size.
MAX_CONTENT_LENGTH = 256 * 1024

# Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
PROXY_COUNT = 0

# Host names requests may carry; None means just PUBLIC_URL's host (any other Host is a 400).
TRUSTED_HOSTS = None

# Where audit events go as JSON lines: a file path, or "-" for standard error.
AUDIT_LOG = "-"

# Addresses (CIDR networks) that may read the Prometheus metrics at /metrics; anyone else gets 404.
METRICS_ALLOW = ["127.0.0.1/32", "::1/128"]

# A bearer token that also opens /metrics from any address (Authorization: Bearer <token>), or None.
METRICS_TOKEN = None

# -- The directory -----------------------------------------------------------------------------

# "openldap" (Password Modify extended operation, ppolicy) or "ad" (unicodePwd).
LDAP_FLAVOUR = "openldap"

# One or more server URLs (ldap:// or ldaps://); several form a failover pool, tried in order.
LDAP_URL = None

# Upgrade ldap:// connections with StartTLS.
LDAP_START_TLS = False

# CA certificate file that verifies the servers' TLS certificates (system CAs when None).
LDAP_CA_FILE = None

# The service account: it finds people, reads their state, and resets passwords. It needs
# `write` (not `manage`) on userPassword: see the README. Required.
LDAP_BIND_DN = None

# The service account's password, or the path of a file holding it (LDAP_BIND_PASSWORD_FILE).
LDAP_BIND_PASSWORD = None
LDAP_BIND_PASSWORD_FILE = None

# Where people are searched. Required.
LDAP_BASE_DN = None

# What makes an entry a person's account.
LDAP_USER_FILTER = "(objectClass=inetOrgPerson)"

# Attributes a person may log in with: the first is the login, the others hold addresses
# (e.g. ["uid", "mail", "mailAlternateAddress"]). Any value of any of them finds the account.
LDAP_LOGIN_ATTRIBUTES = ["uid", "mail"]

# Attribute holding the private recovery address(es) reset links are sent to. Required.
LDAP_RECOVERY_ATTRIBUTE = None

# Attribute with the display name (falls back to cn).
LDAP_DISPLAY_NAME_ATTRIBUTE = "displayName"

# Attribute of a group entry that lists its members' DNs.
LDAP_GROUP_MEMBER_ATTRIBUTE = "member"

# Group whose members use the helpdesk.
LDAP_HELPDESK_GROUP = None

# Group whose members have every helpdesk right and may handle protected accounts.
LDAP_ADMIN_GROUP = None

# Group whose members (administrators, staff) only the admin group may handle.
LDAP_PROTECTED_GROUP = None

# The directory's default password policy entry (for showing locked and expired states); an
# account's own pwdPolicySubentry takes precedence.
LDAP_PASSWORD_POLICY_DN = None

# Seconds to wait for a directory server to connect or answer.
LDAP_TIMEOUT = 5

# -- Mail --------------------------------------------------------------------------------------

# SMTP server that sends mail.
MAIL_SERVER = "localhost"
MAIL_PORT = 25
MAIL_USE_TLS = False
MAIL_USE_SSL = False
MAIL_USERNAME = None
MAIL_PASSWORD = None

# Sender of every mail, e.g. "Hasła <noreply@uni.example>". Required.
MAIL_DEFAULT_SENDER = None

# Seconds to wait for the SMTP server.
MAIL_TIMEOUT = 10

# Seconds to wait before each retry of a mail the SMTP server did not take; after the last,
# the mail is logged as undelivered.
MAIL_RETRY_DELAYS = [2, 10, 30, 60, 120, 300, 600]

# Threads that send mail off the request path.
MAIL_WORKERS = 2

# Seconds a shutdown waits for pending mail before logging what stays undelivered.
MAIL_SHUTDOWN_GRACE = 20

# -- After a change ----------------------------------------------------------------------------

# A command run after every successful password change or reset, with the account's login as its
# only added argument (never the password), e.g. "doveadm auth cache flush" for Dovecot's cache.
# A string (split like a shell would, without a shell) or a list. None: no command.
POST_CHANGE_COMMAND = None

# Seconds the command may run before it is stopped (its failure is logged, the change stands).
POST_CHANGE_TIMEOUT = 10

# -- Links -------------------------------------------------------------------------------------

# Seconds a reset link sent by the forgot-password page is valid.
RESET_LINK_MAX_AGE = 3600

# Whether a reset by link clears a lock the password policy set after failed logins.
RESET_UNLOCKS_ACCOUNT = True

# Seconds a link issued by the helpdesk is valid (at most 24 hours).
HELPDESK_LINK_MAX_AGE = 4 * 3600

# Seconds a link from `flask issue-link` or `bulk-issue` is valid unless --max-age says otherwise,
# and the longest --max-age an administrator may choose.
CLI_LINK_MAX_AGE = 24 * 3600
CLI_LINK_MAX_AGE_CAP = 14 * 24 * 3600

# Seconds a recovery-address confirmation link is valid.
RECOVERY_LINK_MAX_AGE = 86400

# Mail domains that may not serve as recovery addresses: the organisation's own (a recovery address
# must work when the university mailbox does not). Subdomains are refused too. The domains of the
# account's own addresses are always refused, listed here or not.
RECOVERY_FORBIDDEN_DOMAINS = []

# -- Expiry reminders (`flask notify-expiring`) ------------------------------------------------

# Days before a password expires at which its reminder is mailed (each once per password).
REMINDER_DAYS = [14, 7, 1]

# Where the record of sent reminders is kept when RATELIMIT_STORAGE_URI is not Redis (Redis keeps
# it otherwise): the file reminders.json in this directory, which the job must be able to write.
# The systemd units' StateDirectory=pwdrst is /var/lib/pwdrst.
REMINDER_STATE_DIR = "/var/lib/pwdrst"

# -- Password policy ---------------------------------------------------------------------------

# Fewest characters (code points, not bytes) a new password may have. 15 follows NIST SP 800-63B-4
# for a password used alone.
POLICY_MIN_LENGTH = 15

# Most characters a new password may have (never below 64).
POLICY_MAX_LENGTH = 128

# Lowest zxcvbn score (0 to 4) a new password must reach.
POLICY_MIN_SCORE = 3

# The organisation's words that no password should lean on: name, abbreviation, city, domain parts.
POLICY_ORGANISATION_WORDS = []

# A file of forbidden passwords (one a line, matched case-insensitively), or None.
POLICY_BLOCKLIST_FILE = None

# A breach filter file built by `flask --app pwdrst build-breach-filter` from Have I Been Pwned's
# list of breached password hashes, or None. A password found in it is refused ("breached"); about
# 1 in 65,536 others is refused by chance. Memory-mapped, so the workers share one copy. Build the
# file before naming it here: the app does not start with a missing or damaged one.
POLICY_BREACH_FILTER = None

# -- Sessions ----------------------------------------------------------------------------------

# Seconds of inactivity after which a login session ends.
SESSION_IDLE_TIMEOUT = 900

# Seconds after logging in at which a session ends however active it is (not extended by use).
SESSION_MAX_AGE = 8 * 3600

# Where sessions live (the cookie holds only a random id): None for SESSION_DIRECTORY on this
# machine, shared by its workers; "redis://host:port/db" when several app servers share the load.
SESSION_STORAGE_URI = None

# The directory of sessions when SESSION_STORAGE_URI is None; None means "pwdrst-sessions-<uid>"
# in the system temp directory. Created with mode 0700; it must belong to the app's user.
SESSION_DIRECTORY = None

# -- Rate limits (Flask-Limiter syntax) --------------------------------------------------------

# Where counters live: "memory://" for one app server, "redis://host:port" for several.
RATELIMIT_STORAGE_URI = "memory://"

# Reset requests per client address.
RATELIMIT_RESET_REQUEST = "10 per minute;60 per hour"

# Reset mails per account and per recovery address.
RATELIMIT_RESET_MAIL = "3 per hour"

# Link uses (opening or submitting) per client address.
RATELIMIT_LINK_USE = "30 per minute;200 per hour"

# Failed logins per account, in a moving window; it must stay below the directory's lockout
# threshold (pwdMaxFailure of LDAP_PASSWORD_POLICY_DN, checked at start), so that nobody can lock an
# account through pwdrst. Keep the window at least the policy's pwdFailureCountInterval.
# Failed logins per client address.
RATELIMIT_LOGIN_ACCOUNT = "4 per 15 minutes"
RATELIMIT_LOGIN_ADDRESS = "30 per 15 minutes"

# Recovery-address confirmation mails per account.
RATELIMIT_RECOVERY_MAIL = "5 per hour"

# Links a helpdesk member may issue.
RATELIMIT_HELPDESK_ISSUE = "30 per hour"

# Strength checks (the meter) per client address.
RATELIMIT_STRENGTH = "120 per minute"
