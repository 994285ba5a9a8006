"""Signed photo URLs, so that an ``<img src>`` can load a photo without a
bearer header.

    /photos/{id}?exp=<unix seconds>&sig=<hex HMAC-SHA256 over "photo:{id}:{variant}:{exp}">

The key is ``PHOTO_URL_SECRET`` when set, otherwise derived from the JWT key
(an HMAC of it with a fixed label), so every process and every host that
shares the JWT key also agrees on photo signatures, and neither key reveals
the other. Expiry times are rounded up to a quarter of the TTL, so the same
photo keeps the same URL for a while and browsers can cache it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlencode

FULL: Final = "full"
THUMB: Final = "thumb"
VARIANTS: Final = (FULL, THUMB)
EXPIRES_PARAM: Final = "exp"
SIGNATURE_PARAM: Final = "sig"
DERIVATION_LABEL: Final = b"proximity_server/photo-urls/v1"
# Expiry times are multiples of ttl // EXPIRY_STEPS: URLs stay stable that long.
EXPIRY_STEPS: Final = 4
MAX_SIGNATURE_CHARS: Final = 64  # hex SHA-256
MAX_EXPIRY_DIGITS: Final = 12
MIN_SECRET_LENGTH: Final = 32


def derive_key(master: bytes) -> bytes:
    """A key for photo URLs from another server secret (HKDF-style extract)."""
    return hmac.new(master, DERIVATION_LABEL, hashlib.sha256).digest()


def photo_url_key(configured: str | None, jwt_key: bytes) -> bytes:
    """``PHOTO_URL_SECRET`` when set, otherwise derived from the JWT key."""
    if configured:
        if len(configured) < MIN_SECRET_LENGTH:
            raise ValueError(f"PHOTO_URL_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        return configured.encode()
    return derive_key(jwt_key)


class PhotoUrls:
    def __init__(self, key: bytes, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._step = max(1, ttl_seconds // EXPIRY_STEPS)
        self._clock = clock

    def _signature(self, photo_id: str, variant: str, expires: int) -> str:
        message = f"photo:{photo_id}:{variant}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def expiry(self) -> int:
        """At least ``ttl_seconds`` from now, rounded up to the next step."""
        earliest = int(self._clock()) + self.ttl_seconds
        return -(-earliest // self._step) * self._step

    def url(self, photo_id: str, variant: str, expires: int | None = None) -> str:
        exp = self.expiry() if expires is None else expires
        path = f"/photos/{photo_id}" + ("/thumb" if variant == THUMB else "")
        return f"{path}?{urlencode({EXPIRES_PARAM: exp, SIGNATURE_PARAM: self._signature(photo_id, variant, exp)})}"

    def valid(self, photo_id: str, variant: str, expires: str, signature: str) -> bool:
        """Whether a URL's ``exp`` and ``sig`` are good for this photo and
        variant now (constant-time comparison)."""
        if not expires.isdigit() or len(expires) > MAX_EXPIRY_DIGITS or len(signature) > MAX_SIGNATURE_CHARS:
            return False
        exp = int(expires)
        expected = self._signature(photo_id, variant, exp)
        good = hmac.compare_digest(expected.encode(), signature.lower().encode())
        return good and exp >= self._clock()
