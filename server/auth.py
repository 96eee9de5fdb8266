"""JWT bearer tokens: verify the caller's token and name its organization; mint tokens for operators.

HS256 with a shared secret, or RS256/ES256 with a public key (a private key file is only needed to
mint). The organization comes from a configurable claim (default `org_id`); tokens must expire. The
caller (who made a correction, in the audit trail) comes from another claim (default `sub`): a
token without it acts for its organization but cannot correct events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import re
import time
from collections.abc import Iterable
from typing import Any

import jwt

from server.config import Settings
from server.errors import InvalidArgument, Unauthenticated

_ORG_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
# The longest caller claim kept (voided_events.voided_by); a longer one names no caller.
MAX_CALLER_CHARS = 256
_ASYMMETRIC = ["RS256", "ES256"]
# Verified tokens remembered per verifier (TokenVerifier.organization).
VERIFIED_TOKENS_KEPT = 10_000


def single_authorization(metadata: Iterable[tuple[str, Any]]) -> str | None:
    """The one `authorization` value of a call's metadata (None when absent). Two are refused, never
    resolved by picking one: a proxy that adds its own credential beside the caller's (or an HTTP
    request with `Authorization` and `Grpc-Metadata-Authorization`) must not act as either."""
    values = [v for k, v in metadata if k == "authorization"]
    if len(values) > 1:
        raise InvalidArgument(
            f"the call carries {len(values)} authorization headers: send exactly one bearer token",
            reason=InvalidArgument.AMBIGUOUS_CREDENTIALS,
        )
    return values[0] if values else None


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who calls: the token's organization, and its caller claim ("" when the token has none)."""

    organization: str
    caller: str = ""


class TokenVerifier:
    """Checks `authorization: Bearer <JWT>` values against the configured key."""

    def __init__(self, settings: Settings) -> None:
        self._claim = settings.jwt_org_claim
        self._caller_claim = settings.jwt_caller_claim
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None
        if settings.jwt_public_key_file:
            self._key: str | bytes = pathlib.Path(settings.jwt_public_key_file).read_bytes()
            self._algorithms = _ASYMMETRIC
        elif settings.jwt_secret:
            self._key = settings.jwt_secret
            self._algorithms = ["HS256"]
        else:
            raise ValueError("no JWT key configured: set USAGE_JWT_SECRET or USAGE_JWT_PUBLIC_KEY_FILE")
        # token -> (caller, exp) of tokens whose signature and claims were verified: a caller
        # sends the same token on every call until it expires, and verifying costs more than the
        # rest of a small RPC. The expiry is still checked on every call.
        self._verified: dict[str, tuple[Caller, float]] = {}

    def organization(self, authorization: str | None) -> str:
        """The organization of a valid bearer token; Unauthenticated otherwise."""
        return self.caller(authorization).organization

    def caller(self, authorization: str | None) -> Caller:
        """The organization and caller of a valid bearer token; Unauthenticated otherwise."""
        if not authorization:
            raise Unauthenticated(
                "missing bearer token: send 'authorization: Bearer <JWT>'", reason=Unauthenticated.MISSING
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "the authorization header must be 'Bearer <JWT>'", reason=Unauthenticated.MISSING
            )
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            self._verified.pop(token, None)
            raise Unauthenticated("the bearer token has expired", reason=Unauthenticated.EXPIRED)
        caller, exp = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()  # a bound, not an LRU: tokens are few and long-lived
        self._verified[token] = (caller, exp)
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            claims = jwt.decode(
                token.strip(),
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired", reason=Unauthenticated.EXPIRED) from None
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is invalid", reason=Unauthenticated.INVALID) from None
        org = claims.get(self._claim)
        if not isinstance(org, str) or not _ORG_RE.fullmatch(org):
            raise Unauthenticated(
                f"the bearer token has no valid '{self._claim}' claim", reason=Unauthenticated.NO_ORGANIZATION
            )
        name = claims.get(self._caller_claim)
        if not isinstance(name, str) or not 0 < len(name) <= MAX_CALLER_CHARS or "\x00" in name:
            name = ""  # no usable caller: corrections refuse the token (logic/corrections.py)
        return Caller(org, name), float(claims["exp"])


def mint_token(settings: Settings, org: str, ttl: dt.timedelta, caller: str | None = None) -> str:
    """A token for `org` signed with the configured key (HS256 secret or the private key file); its
    caller claim names `caller`, by default the organization itself."""
    if not _ORG_RE.fullmatch(org):
        raise ValueError(f"invalid organization id: {org!r}")
    if caller is not None and not 0 < len(caller) <= MAX_CALLER_CHARS:
        raise ValueError(f"invalid caller: 1 to {MAX_CALLER_CHARS} characters")
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, object] = {settings.jwt_org_claim: org, "iat": now, "exp": now + ttl, "sub": org}
    claims[settings.jwt_caller_claim] = org if caller is None else caller
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_private_key_file:
        key = pathlib.Path(settings.jwt_private_key_file).read_bytes()
        algorithm = "ES256" if b"EC PRIVATE" in key or _is_ec(key) else "RS256"
        return jwt.encode(claims, key, algorithm=algorithm)
    if not settings.jwt_secret:
        raise ValueError("no signing key: set USAGE_JWT_SECRET or USAGE_JWT_PRIVATE_KEY_FILE")
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def _is_ec(pem: bytes) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return isinstance(load_pem_private_key(pem, password=None), ec.EllipticCurvePrivateKey)


def parse_ttl(text: str) -> dt.timedelta:
    """`90s`, `15m`, `1h`, `7d` -> timedelta."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise ValueError(f"invalid ttl {text!r}: use a number and s, m, h or d (e.g. 1h)")
    n, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])
