#!/usr/bin/env bash
# Install everything pwdrst needs on a fresh Debian machine: system packages (slapd, ldap-utils,
# samba as an AD domain controller, Dovecot and Apache httpd as the directory's other clients in the
# tests, chromium, chromium-driver, redis-server), a virtual environment with the Python packages, and
# the compiled message catalogues. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(slapd ldap-utils chromium chromium-driver redis-server python3-venv openssl
  dovecot-imapd dovecot-ldap apache2)
# A Samba AD domain controller stands in for Active Directory in the tests (pwdrst/sandbox_samba.py).
# Installed without recommends, so name what `samba-tool domain provision` and the DC's LDAP server
# need: the DSDB modules, the provisioning templates, and the VFS modules (provisioning sets the
# sysvol ACLs through acl_xattr); ldb-tools to change the database files directly.
PACKAGES+=(samba samba-dsdb-modules samba-ad-provision samba-vfs-modules ldb-tools)
# npm installs axe-core for the browser tests; Debian's npm only where no Node.js is on the PATH.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # slapd would otherwise configure and start a system-wide server on port 389; pwdrst runs its
  # own private instances on free loopback ports instead.
  # debconf's database has its own lock, which apt's lock timeout below does not cover: another
  # install running at the same moment holds it, so wait for it (10 minutes) as apt does.
  for _ in $(seq 120); do
    echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections 2>/dev/null && break
    sleep 5
  done
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  # Keep package scripts from starting system daemons (redis-server, slapd, samba, dovecot on
  # 143/993, apache2 on 80) we never use: the tests start their own on free loopback ports.
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  # Wait for the package lock (automatic updates may hold it) instead of failing at once.
  APT=(apt-get -o DPkg::Lock::Timeout=600)
  $SUDO "${APT[@]}" update -q
  DEBIAN_FRONTEND=noninteractive $SUDO "${APT[@]}" install -y -q --no-install-recommends "${missing[@]}"
  if [ -n "$policy_added" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
# Should a system Dovecot or Apache be running all the same (an older install, a policy that let it
# start), stop it: it holds ports 80/143/993 and is none of ours.
for pidfile_service in /run/dovecot/master.pid:dovecot /run/apache2/apache2.pid:apache2; do
  pidfile="${pidfile_service%%:*}"
  service="${pidfile_service##*:}"
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "setup: stopping the system $service, which the tests do not use"
    $SUDO service "$service" stop || true
  fi
done

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Install the Python packages only when the declared dependencies changed since the last install,
# so that once set up, the demo and the tests start without reaching any package registry. pip's
# chatter (the editable-install banner) goes to a log, shown only if the install fails.
stamp=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.pwdrst-installed 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing the Python packages into .venv"
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip \
      && .venv/bin/python -m pip install -q -e '.[demo,test]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (the log above is also in $log)" >&2
    exit 1
  fi
  echo "$stamp" > .venv/.pwdrst-installed
fi
if ! out=$(.venv/bin/pybabel compile -d pwdrst/translations 2>&1); then
  echo "$out" >&2
  exit 1
fi
# axe-core, which the browser tests run inside each page (tests/test_look.py), into node_modules/
# (ignored by git). Installed once; the tests then start without reaching the npm registry.
if [ ! -f node_modules/axe-core/axe.min.js ]; then
  echo "setup: installing axe-core for the browser tests"
  npm install --silent --no-save --no-package-lock --no-audit --no-fund --prefix . axe-core@4 >/dev/null
fi
