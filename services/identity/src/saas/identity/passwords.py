"""Passwords: the policy a new one must meet, and argon2id hashing off the event loop.

Hashing is deliberately slow (tens of milliseconds of CPU). It runs in a thread pool of its own,
sized to the CPUs, never on the event loop (argon2-cffi releases the GIL while it works), so a
burst of logins delays other logins but never other requests. A bounded queue turns away what
the CPUs could not hash before the caller gives up anyway.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from saas.common.contracts.identity import PASSWORD_MAX
from saas.common.errors import ErrorCode, ServiceError


# -- policy (pure) -------------------------------------------------------------------------------
@cache
def common_passwords() -> frozenset[str]:
    """zxcvbn's list of the most used passwords, lowercased; loaded once."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def password_problems(password: str, *, min_length: int, email: str | None = None) -> list[str]:
    """Why `password` may not be used (empty when it may)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters long")
    if len(password) > PASSWORD_MAX:
        problems.append(f"must be at most {PASSWORD_MAX} characters long")
    if password.lower() in common_passwords():
        problems.append("is one of the most commonly used passwords; choose another")
    elif email and password.strip().lower() == email.strip().lower():
        problems.append("must not be your email address")
    return problems


def check_password(
    password: str, *, min_length: int, field: str = "password", email: str | None = None
) -> None:
    """Raise `validation_error` with one error per problem, located at `field`."""
    problems = password_problems(password, min_length=min_length, email=email)
    if problems:
        raise ServiceError(
            ErrorCode.VALIDATION_ERROR,
            f"the {field.replace('_', ' ')} does not meet the password policy",
            {"errors": [{"loc": [field], "msg": msg} for msg in problems]},
        )


# -- hashing (a thread pool of its own) ----------------------------------------------------------
def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Passwords:
    """argon2id hashing and verification in a dedicated pool, with a bounded queue."""

    def __init__(
        self,
        *,
        time_cost: int,
        memory_cost: int,
        parallelism: int,
        threads: int | None = None,
        max_waiting: int = 64,
    ) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )
        self.threads = threads or available_cpus()
        self.max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="argon2")
        self._in_pool = 0
        self._dummy: str | None = None

    async def _run(self, fn, *args):
        if self._in_pool >= self.threads + self.max_waiting:
            raise ServiceError(
                ErrorCode.SERVICE_UNAVAILABLE, "too many sign-ins at once; try again shortly"
            )
        self._in_pool += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._in_pool -= 1

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(_verify, self.hasher, password_hash, password)

    async def verify_nobody(self, password: str) -> None:
        """The work of a verification for an address with no account, so that its answer takes
        as long as a wrong password's."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """The hash was made with other parameters than today's (rehash it at the next login)."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _verify(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
