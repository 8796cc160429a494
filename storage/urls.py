"""Database URLs in messages: never with their password."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit


def redacted(url: str) -> str:
    """The URL without its password (for messages): in the user part (also with an empty user name,
    ``postgresql://:PW@host``) and as a ``password=`` query parameter."""
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def password(url: str) -> str:
    """The password ``url`` carries ("" when none, or when the URL does not parse)."""
    try:
        parts = urlsplit(url)
        return parts.password or (parse_qs(parts.query).get("password") or [""])[0]
    except ValueError:
        return ""
