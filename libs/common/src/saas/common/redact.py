"""Taking secrets out of text before it is logged, reported or stored in a header.

Error messages carry values: a driver echoes the argument it could not convert, PostgreSQL's
detail names the key that already exists, a connection error quotes the URL it was given (with
its password). Every log line goes through `redact` (a structlog processor), and so does every
error text that leaves a process another way (readiness bodies, dead-letter headers).
"""

from __future__ import annotations

import re

_PATTERNS = (
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I), r"\g<keep>***@"),
    # asyncpg: invalid input for query argument $1: 'value' (reason)
    (re.compile(r"(?P<keep>query argument \$\d+: ).*?(?= \(|$)", re.M), r"\g<keep>***"),
    # PostgreSQL detail: Key (email)=(someone@example.com) already exists.
    (re.compile(r"(?P<keep>Key \([^)]*\)=\().*?(?=\) )"), r"\g<keep>***"),
    # SQLAlchemy's statement parameters, should they ever be shown
    (re.compile(r"\[parameters: .*?\](?=\s|$)", re.S), "[parameters: ***]"),
    # bearer tokens and JWTs
    (re.compile(r"(?P<keep>Bearer )[A-Za-z0-9._~+/=-]+", re.I), r"\g<keep>***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***jwt***"),
)


# Each pattern above needs one of these (lowercased) in the text: a text with none of them is
# returned as it is without running six regular expressions over it. Most log values (methods,
# paths, ids, messages) are such texts, and every log line passes here.
_MARKERS = ("://", "query argument", "key (", "[parameters:", "bearer", "eyj")


def redact(text: str) -> str:
    lowered = text.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def describe(exc: BaseException) -> str:
    """An exception as one line that is safe to log or store: its type and redacted message."""
    return redact(f"{type(exc).__name__}: {exc}")[:1000]
