"""Session tokens for ``xtk:session#Logon``: stateless and signed.

A Logon with a valid API key (see :mod:`tidings.api.soap` for how ``login``/``password``
name one) answers a session token::

    ___tid.<key prefix>.<expiry, Unix seconds>.<nonce>.<signature>

The signature is HMAC-SHA256 over the prefix, expiry and nonce, keyed by
``HMAC(soap_session_secret, <the API key's stored hash>)``. Why stateless: the schema is
not ours to change, and execution nodes are stateless by design, so a token issued by one
node must be accepted by every other without shared session rows. The key is derived from
data every node already shares (the key's hash in the database) plus an operator secret
(``TIDINGS_SOAP_SESSION_SECRET``, the same on every node): revoking the API key invalidates
all its sessions at once (within the key cache's few seconds), and with the secret set, read
access to the database is not enough to forge a token. Tokens expire after
``soap_session_ttl`` seconds (24 h, as Adobe's).

``Logoff`` cannot un-sign a token: it is remembered in this process's memory until the token
expires, so a logged-off token is refused by the node that served the Logoff (and, as with
Adobe, expires everywhere at its end of life). The security token returned beside the
session token (``pstrSecurityToken``) is accepted and ignored on later calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import msgspec

PREFIX = "___tid."


class Claims(msgspec.Struct, frozen=True):
    """What a well-formed token says: the API key's prefix and the expiry (Unix seconds)."""

    key_prefix: str
    expires: int
    signed: str
    signature: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Sessions:
    """Issues and checks session tokens."""

    def __init__(self, secret: str, ttl: float):
        self.secret = secret.encode()
        self.ttl = ttl
        self._logged_off: dict[str, float] = {}

    def _mac(self, key_hash: str, signed: str) -> str:
        key = hmac.new(self.secret, key_hash.encode(), hashlib.sha256).digest()
        return _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())

    def issue(self, key_prefix: str, key_hash: str, now: float | None = None) -> tuple[str, str]:
        """A new (session token, security token) for the API key ``key_prefix``."""
        expires = int((time.time() if now is None else now) + self.ttl)
        signed = f"{key_prefix}.{expires}.{secrets.token_urlsafe(12)}"
        token = f"{PREFIX}{signed}.{self._mac(key_hash, signed)}"
        security = "@" + _b64(hashlib.sha256(token.encode()).digest())
        return token, security

    @staticmethod
    def is_token(text: str) -> bool:
        """Whether ``text`` looks like a session token (rather than ``login/password``)."""
        return text.startswith(PREFIX)

    def claims(self, token: str, now: float | None = None) -> Claims | None:
        """The claims of a well-formed, unexpired, not logged-off token (not yet verified:
        :meth:`verify` needs the key's hash)."""
        parts = token[len(PREFIX) :].split(".") if self.is_token(token) else []
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        expires = int(parts[1])
        if expires < (time.time() if now is None else now) or token in self._logged_off:
            return None
        return Claims(parts[0], expires, ".".join(parts[:3]), parts[3])

    def verify(self, claims: Claims, key_hash: str) -> bool:
        """Whether ``claims`` were signed for the key whose stored hash is ``key_hash``."""
        return hmac.compare_digest(self._mac(key_hash, claims.signed), claims.signature)

    def log_off(self, token: str, now: float | None = None) -> None:
        """Refuse ``token`` from now on (in this process), until it would have expired."""
        now = time.time() if now is None else now
        self._logged_off = {t: e for t, e in self._logged_off.items() if e > now}
        claims = self.claims(token, now)
        if claims is not None and len(self._logged_off) < 100_000:
            self._logged_off[token] = claims.expires
