"""Access tokens: signed JWTs that expire like RTZR's, can be revoked, and refuse tampering."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

DEFAULT_TOKEN_TTL_S = 6 * 3600  # RTZR tokens live 6 hours


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expire_at: int


class TokenIssuer:
    """Issues and verifies tokens with a per-instance secret; ``revoke_all`` expires them early."""

    def __init__(self, ttl_s: float = DEFAULT_TOKEN_TTL_S, key: bytes | None = None) -> None:
        self.ttl_s = ttl_s
        self._key = key or secrets.token_bytes(32)  # one key for every worker of a ``serve --workers``
        self._generation = 0

    def issue(self, client_id: str) -> IssuedToken:
        now = int(time.time())
        expire_at = now + int(self.ttl_s)
        claims = {
            "sub": client_id,
            "iat": now,
            "exp": expire_at,
            "jti": secrets.token_urlsafe(12),
            "gen": self._generation,
            "iss": "fakertzr",
        }
        return IssuedToken(jwt.encode(claims, self._key, algorithm="HS256"), expire_at)

    def verify(self, token: str) -> tuple[str | None, str]:
        """Return (client_id, "") for a good token, or (None, why) for a bad one."""
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            return None, "token expired"
        except jwt.InvalidTokenError:
            return None, "invalid token"
        if claims.get("gen", -1) != self._generation:
            return None, "token expired"
        return str(claims["sub"]), ""

    def revoke_all(self) -> None:
        self._generation += 1


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, scheme case-insensitive."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
