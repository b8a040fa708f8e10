"""What counts as a secret, and how values are shown without one.

One home for the rule: ``config show`` masks by it and config errors refuse to quote by it.
"""

from __future__ import annotations

# A setting or option whose name holds one of these words holds a secret; so does one whose
# name ends in "key" (account_key, service_account_key...). Names ending in these suffixes
# hold where a secret lives, not the secret: a token file, a credentials path, a token URL.
_SECRET_WORDS = ("secret", "password", "token", "sas", "apikey", "accountkey", "customerkey")
_NOT_SECRET_SUFFIXES = ("file", "path", "url", "uri")


def is_secret_name(name: str) -> bool:
    """Is ``name`` (a config key's last part, an option or a query key) the name of a secret?"""
    n = name.rsplit(".", 1)[-1].lower().replace("_", "").replace("-", "")
    if n.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return any(w in n for w in _SECRET_WORDS) or n.endswith("key")


def mask(value: object) -> str:
    return "****" if value else ""
