"""Password rules and hashing (argon2id via argon2-cffi, off the event loop).

A password needs at least ``MIN_PASSWORD_LENGTH`` characters and must not be
one of the common passwords in ``data/common_passwords.txt``. Hashing and
verification run in a small thread pool (argon2-cffi releases the GIL), so
the loop keeps serving while a login is checked.

Parameters (``PROFILES``): "production" takes ~30–60 ms per hash on the
2-core reference machine; "test" is cheap and only for the test suite.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from proximity_server.features.errors import WeakPassword

MIN_PASSWORD_LENGTH: Final = 10
MAX_PASSWORD_LENGTH: Final = 1024
COMMON_PASSWORDS_FILE: Final = Path(__file__).with_name("data") / "common_passwords.txt"


@dataclass(frozen=True, slots=True)
class Argon2Params:
    time_cost: int
    memory_cost_kib: int
    parallelism: int


PROFILES: Final = {
    # ~50 ms per hash or verify on the 2-core reference machine (OWASP's
    # minimum is 19 MiB, t=2); one hash at a time per thread, so memory stays
    # bounded by the pool size.
    "production": Argon2Params(time_cost=2, memory_cost_kib=32 * 1024, parallelism=1),
    "test": Argon2Params(time_cost=1, memory_cost_kib=64, parallelism=1),
}


@cache
def common_passwords() -> frozenset[str]:
    """The list's entries long enough to pass the length rule (shorter ones are refused anyway)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().lower() for line in lines if len(line.strip()) >= MIN_PASSWORD_LENGTH and not line.startswith("#")
    )


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")
    if password.lower() in common_passwords():
        raise WeakPassword("this password is among the most common ones; choose another")


class Passwords:
    def __init__(self, params: Argon2Params, executor: Executor) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        self._executor = executor
        # Verified against when the email is unknown, so that answer takes as long.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with no hash, spend the same time and say no."""
        target = self._dummy_hash if password_hash is None else password_hash
        ok = await asyncio.get_running_loop().run_in_executor(self._executor, self._verify, target, password)
        return ok and password_hash is not None

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
