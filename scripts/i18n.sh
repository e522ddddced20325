#!/usr/bin/env bash
# Re-extract the messages and merge them into the Polish catalogue (then translate what is new).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o pwdrst/translations/messages.pot --no-location --sort-output .
if [ -f pwdrst/translations/pl/LC_MESSAGES/messages.po ]; then
  .venv/bin/pybabel update -w 100 -i pwdrst/translations/messages.pot -d pwdrst/translations -l pl --no-fuzzy-matching --ignore-obsolete
else
  .venv/bin/pybabel init -i pwdrst/translations/messages.pot -d pwdrst/translations -l pl
fi
.venv/bin/pybabel compile -d pwdrst/translations
