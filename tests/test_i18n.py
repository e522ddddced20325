"""The Polish catalogue is complete: every text of the interface has its translation."""

import os
import subprocess
import sys

from babel.messages.pofile import read_po


def test_every_message_in_the_code_has_a_polish_translation(project_root, tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "pybabel"),
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-o",
            str(pot),
            ".",
        ],
        cwd=project_root,
        check=True,
        capture_output=True,
    )
    with open(pot, "rb") as fh:
        wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}
    with open(os.path.join(project_root, "pwdrst", "translations", "pl", "LC_MESSAGES", "messages.po"), "rb") as fh:
        catalogue = read_po(fh, locale="pl")
    translated = set()
    for message in catalogue:
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and all(strings) and not message.fuzzy:
            translated.add(message.id if isinstance(message.id, str) else message.id[0])
    assert sorted(wanted - translated) == []
