"""An API key that survives ``pickle`` without being written into the pickle.

Pickling settings (or a ``MemReranker``, or a framework shell) writes a :class:`SealedSecret`
in place of the key: a random token that means nothing outside this process. The process that
sealed the key keeps the token-to-key map in memory, so unpickling here, or in a forked child
(``multiprocessing`` with the fork start method), gets the key back. Anywhere else the token
cannot be opened and unpickling says so: the key has to be given to that process itself.
"""

from __future__ import annotations

import secrets
import threading

_lock = threading.Lock()
_token_of: dict[str, str] = {}  # key -> token; bounded by the number of distinct keys
_key_of: dict[str, str] = {}  # token -> key


class SealedSecret:
    """A pickle-safe stand-in for a secret (see the module docstring)."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "SealedSecret('**********')"

    def __reduce__(self) -> tuple[type[SealedSecret], tuple[str]]:
        return (SealedSecret, (self.token,))

    def unseal(self) -> str | None:
        """The secret, if this process (or the one it was forked from) sealed it."""
        with _lock:
            return _key_of.get(self.token)


def seal(secret: str) -> SealedSecret:
    """The stand-in of ``secret``; the same secret always gets the same token here."""
    with _lock:
        token = _token_of.get(secret)
        if token is None:
            token = secrets.token_urlsafe(24)
            _token_of[secret] = token
            _key_of[token] = secret
    return SealedSecret(token)
