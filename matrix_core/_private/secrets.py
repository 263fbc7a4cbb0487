"""Secrets never travel in error text. A server may echo the key it was sent (in a 401 body,
say); the LLM client scrubs every answer's text before it becomes an error message, a log
line or an output record, whatever the backend."""
from __future__ import annotations

import os
import re
from typing import Iterable

MASK = "***"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_CHARS = 8  # shorter values (a "1", "true") would blank ordinary words
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;)\]}]+")


def environment_secrets() -> set[str]:
    """Values of environment variables whose names say they hold a secret (``*_API_KEY``)."""
    return {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_CHARS}


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each secret (and any ``Bearer`` credential) replaced by ``***``."""
    known = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS} | environment_secrets()
    for secret in sorted(known, key=len, reverse=True):  # longest first: a key containing another
        text = text.replace(secret, MASK)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)
