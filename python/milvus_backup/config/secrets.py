"""What counts as a secret, and how values and URLs are shown without one.

One home for the rule: ``config show`` masks by it, config errors refuse to quote by it, and
URLs are refused when they would carry a secret into an error, a progress line, a manifest or
shell history.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

# A setting or option whose name holds one of these words holds a secret; so does one whose
# name ends in "key" (account_key, service_account_key...). Names ending in these suffixes
# hold where a secret lives, not the secret: a token file, a credentials path, a token URL.
_SECRET_WORDS = ("secret", "password", "token", "sas", "apikey", "accountkey", "customerkey")
_NOT_SECRET_SUFFIXES = ("file", "path", "url", "uri")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]*)(?::[0-9]*)?")  # host, [v6] host, optional :port


def is_secret_name(name: str) -> bool:
    """Is ``name`` (a config key's last part, an option or a query key) the name of a secret?"""
    n = name.rsplit(".", 1)[-1].lower().replace("_", "").replace("-", "")
    if n.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return any(w in n for w in _SECRET_WORDS) or n.endswith("key")


def mask(value: object) -> str:
    return "****" if value else ""


def has_password(url: str) -> bool:
    """Does this URL (or bare ``host`` value) carry ``user:password@``?

    Also true for an authority with a colon that is not a port, followed by an ``@`` later: a
    secret with a ``/`` in it (AWS secrets often have one) ends the authority early,
    ``s3://AK:abc/def@bucket``.
    """
    rest = _SCHEME.sub("", url.strip(), count=1)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, host = authority.rpartition("@")
    if at:
        return ":" in userinfo
    return "@" in rest and _PORT.fullmatch(host) is None


def url_secret(url: str) -> str | None:
    """What secret the URL carries, in words that do not repeat it; None when it carries none.

    A ``user:password@`` part, a query key named like a secret (``secret_access_key``,
    ``account_key``, ``sas_token``...) or a query value that is itself a URL with a password.
    """
    if has_password(url):
        return "a user:password@ part"
    query = url.split("?", 1)[1] if "?" in url else ""  # a '#' is no fragment (see split_url)
    for key, value in parse_qsl(query, keep_blank_values=True):
        if is_secret_name(key):
            return f"the secret {key}"
        if "://" in value and has_password(value):
            return f"a user:password@ part in {key}"
    return None


def display_url(url: str) -> str:
    """The URL as it may be shown: without its query (which may hold secrets), and nothing
    past the scheme when it carries a password."""
    if has_password(url):
        m = _SCHEME.match(url.strip())
        return f"{m.group(0)}***" if m else "***"
    return url.split("?", 1)[0]
