"""Audit events as JSON lines: who did what to which account, from where, with what outcome.

Never a password, a token or a hash: callers pass only the fields below and short reason codes.
"""

import json
import logging
import secrets
import sys
from datetime import UTC, datetime

from flask import g, has_request_context, request

from pwdrst import metrics

logger = logging.getLogger("pwdrst.audit")


def init_app(app) -> None:
    """Send audit lines to AUDIT_LOG and give every request an id."""
    target = app.config["AUDIT_LOG"]
    if not any(getattr(h, "_pwdrst_target", None) == target for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target, encoding="utf-8")
        handler._pwdrst_target = target
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = True

    @app.before_request
    def assign_request_id():
        g.request_id = secrets.token_hex(8)


def log(event: str, outcome: str, account: str | None = None, actor: str | None = None, **fields) -> dict:
    """Write one audit event and return it."""
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "request_id": g.get("request_id") if has_request_context() else None,
        "event": event,
        "outcome": outcome,
        "account": account,
        "actor": actor if actor is not None else account,
        "client": request.remote_addr if has_request_context() else None,
    }
    record.update(fields)
    logger.info(json.dumps(record, ensure_ascii=False, sort_keys=False))
    metrics.count_event(record)
    return record
