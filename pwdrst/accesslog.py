"""Gunicorn's logs without link tokens (the path of a link carries one).

Gunicorn writes request paths to its access log, and to its error log as well: every request line
at --log-level debug, and the request of an unhandled error.
"""

import logging
import re

from gunicorn.glogging import Logger

TOKEN_PATH = re.compile(r"/(reset|recovery)/(?!new\b|sent\b|done\b|confirm\b|remove\b)[^/?\s\"]+")


def redact(text: str) -> str:
    """Replace the token in link paths with [token]."""
    return TOKEN_PATH.sub(r"/\1/[token]", text)


class RedactingFilter(logging.Filter):
    """Take tokens out of each record's message (its arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class RedactingLogger(Logger):
    """Gunicorn's logger, with tokens taken out of the access log's path fields and of the error log."""

    def setup(self, cfg):
        super().setup(cfg)
        if not any(isinstance(f, RedactingFilter) for f in self.error_log.filters):
            self.error_log.addFilter(RedactingFilter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "{raw_uri}e", "{path_info}e", "{request_uri}e", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
