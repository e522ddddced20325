"""Gunicorn's access log without link tokens (the path of a link carries one)."""

import re

from gunicorn.glogging import Logger

TOKEN_PATH = re.compile(r"/(reset|recovery)/(?!new\b|sent\b|done\b|confirm\b|remove\b)[^/?\s\"]+")


def redact(text: str) -> str:
    """Replace the token in link paths with [token]."""
    return TOKEN_PATH.sub(r"/\1/[token]", text)


class RedactingLogger(Logger):
    """Gunicorn's logger, with tokens taken out of every access-log field that holds the path."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "{raw_uri}e", "{path_info}e", "{request_uri}e", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
