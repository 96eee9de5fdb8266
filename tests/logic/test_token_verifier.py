"""TokenVerifier remembers verified tokens, but never past their expiry, and never trusts a token it
has not verified itself."""

from __future__ import annotations

import datetime as dt
import time

import jwt
import pytest

from server.auth import TokenVerifier, mint_token
from server.config import Settings
from server.errors import Unauthenticated

SETTINGS = Settings(jwt_secret="verifier-test-secret-of-at-least-32-bytes")


def test_a_remembered_token_still_expires() -> None:
    verifier = TokenVerifier(SETTINGS)
    exp = int(time.time()) + 2
    token = jwt.encode({"org_id": "org_a", "exp": exp}, SETTINGS.jwt_secret, algorithm="HS256")
    assert verifier.organization(f"Bearer {token}") == "org_a"
    assert verifier.organization(f"Bearer {token}") == "org_a"  # answered from memory
    while time.time() < exp:  # wait for the expiry itself, not for a duration
        time.sleep(0.05)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.organization(f"Bearer {token}")
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.organization(f"Bearer {token}")


def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    verifier = TokenVerifier(SETTINGS)
    token = mint_token(SETTINGS, "org_a", dt.timedelta(hours=1))
    assert verifier.organization(f"Bearer {token}") == "org_a"
    header, payload, signature = token.split(".")
    forged = jwt.encode(
        {"org_id": "org_b", "exp": int(time.time()) + 3600}, "another-secret-of-at-least-32-bytes!!"
    )
    for bad in (f"{header}.{forged.split('.')[1]}.{signature}", f"{token}x", forged):
        with pytest.raises(Unauthenticated):
            verifier.organization(f"Bearer {bad}")
    other = TokenVerifier(Settings(jwt_secret="a-different-secret-of-at-least-32-bytes"))
    with pytest.raises(Unauthenticated):
        other.organization(f"Bearer {token}")  # memory is per verifier (per key)
