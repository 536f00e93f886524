"""Teacher and admin accounts: created from the command line, signed in with a password."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.auth.passwords import hash_password, needs_rehash, verify_password
from voice_server.auth.tokens import Role, new_subject
from voice_server.store.schema import accounts

MAX_USERNAME_CHARS = 64


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    role: Role


class AccountExists(ValueError):
    pass


async def create_account(engine: AsyncEngine, username: str, password: str, role: Role) -> Account:
    username = username.strip()
    if not username or len(username) > MAX_USERNAME_CHARS:
        raise ValueError(f"a username has 1 to {MAX_USERNAME_CHARS} characters")
    if role is Role.STUDENT:
        raise ValueError("students do not have password accounts; they sign in with a link")
    # argon2 is deliberately slow: off the event loop.
    password_hash = await asyncio.to_thread(hash_password, password)
    account = Account(new_subject("adm" if role is Role.ADMIN else "tch"), role)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(accounts).values(
                    id=account.id, username=username, role=role.value,
                    password_hash=password_hash, created_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        raise AccountExists(f"an account named {username!r} already exists") from None
    return account


async def authenticate(engine: AsyncEngine, username: str, password: str) -> Account | None:
    """The account when the password matches; None otherwise (unknown name or wrong password
    alike, in about the same time)."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(accounts.c.id, accounts.c.role, accounts.c.password_hash).where(
                    accounts.c.username == username.strip()
                )
            )
        ).first()
    stored = row.password_hash if row else None
    if not await asyncio.to_thread(verify_password, stored, password) or row is None:
        return None
    if needs_rehash(row.password_hash):  # argon2 parameters were raised since it was hashed
        new_hash = await asyncio.to_thread(hash_password, password)
        async with engine.begin() as connection:
            await connection.execute(
                update(accounts).where(accounts.c.id == row.id).values(password_hash=new_hash)
            )
    return Account(row.id, Role(row.role))


async def count_admins(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            select(func.count()).select_from(accounts).where(accounts.c.role == Role.ADMIN.value)
        )
        return int(result.scalar_one())
