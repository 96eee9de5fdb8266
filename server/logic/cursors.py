"""Opaque, signed page cursors.

A cursor is `base64url(json payload) "." base64url(HMAC-SHA256)`. The payload holds the keyset
position, the `as_of` of the walk (logic/as_of.py: every page of a walk is as of its first), and a
fingerprint of the organization and the filters it was issued for; a cursor whose
signature fails, or that is replayed by another organization or with other filters, is rejected as
INVALID_ARGUMENT on the `cursor` field. `limit` is not part of the fingerprint: it may change
between pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from server.errors import InvalidArgument

# What a caller is told of a cursor it should not have sent (the field is `cursor`).
MALFORMED = "malformed: pass back pagination.cursor as it was given"
NOT_ISSUED_HERE = "not issued by this service: pass back pagination.cursor as it was given"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# json.dumps with these arguments makes a new encoder on every call; these are made once and write
# the same text (a cursor issued before must still be accepted: its payload and fingerprint stay).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def fingerprint(org: str, scope: str, filters: Any) -> str:
    """A short digest binding a cursor to the organization, the RPC and its filters."""
    return hashlib.sha256(_CANONICAL([org, scope, filters]).encode()).hexdigest()[:32]


class CursorCodec:
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a cursor secret is required")
        self._key = hashlib.sha256(b"usage-service cursor v1\x00" + secret.encode()).digest()

    def encode(self, bound_to: str, position: list[Any]) -> str:
        payload = _b64(_COMPACT({"b": bound_to, "p": position}).encode())
        return f"{payload}.{self._signature(payload)}"

    def _signature(self, payload: str) -> str:
        return _b64(hmac.digest(self._key, payload.encode(), "sha256"))  # one call into OpenSSL

    def decode(self, cursor: str, bound_to: str, field: str = "cursor") -> list[Any]:
        """The position of a cursor issued for `bound_to`, or InvalidArgument on `field` (`cursor`,
        or ExportUsageEvents' `resume_token`, which is a cursor too)."""
        payload, _, sig = cursor.partition(".")
        expected = self._signature(payload)
        # Bytes: compare_digest refuses str with non-ASCII characters (a hostile cursor may hold any).
        if not sig or not hmac.compare_digest(sig.encode(), expected.encode()):
            raise InvalidArgument.field(field, _worded(NOT_ISSUED_HERE, field))
        try:
            data = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            raise InvalidArgument.field(field, _worded(MALFORMED, field)) from None
        if data.get("b") != bound_to:
            raise InvalidArgument.field(
                field,
                f"the {'cursor' if field == 'cursor' else 'token'} belongs to another query: use it with "
                "the filters it was issued for",
            )
        position = data.get("p")
        if not isinstance(position, list):
            raise InvalidArgument.field(field, _worded(MALFORMED, field))
        return position


def _worded(message: str, field: str) -> str:
    """A cursor message for `field`: what to pass back is the resume token of the last chunk."""
    if field == "cursor":
        return message
    return message.replace("pagination.cursor", "the resume_token of the last chunk received")


def walk_position(position: list[Any], field: str = "cursor") -> tuple[tuple[int, str], int | None]:
    """A decoded keyset position (timestamp_us, id) and the as_of of its walk (None in cursors
    issued before answers had one), or InvalidArgument on `field`."""
    if (
        len(position) not in (2, 3)
        or not isinstance(position[0], int)
        or not isinstance(position[1], str)
        or (len(position) == 3 and not isinstance(position[2], int))
    ):
        raise InvalidArgument.field(field, _worded(MALFORMED, field))
    return (position[0], position[1]), (position[2] if len(position) == 3 else None)
