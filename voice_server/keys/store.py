"""The provider_keys table. Secrets go in encrypted (SecretBox) and come out only through
`read_secret`; everything else here returns `KeyInfo`, which has no secret in it."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.keys.vault import SecretBox
from voice_server.store.schema import KEY_PROVIDERS, provider_keys

FINGERPRINT_CHARS = 4
# Shorter than this and the last characters shown as a fingerprint give too much of it away.
MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 4096



class KeyProvider(enum.StrEnum):
    """Whose key it is (schema.KEY_PROVIDERS, which the table's check constraint names)."""

    AZURE_SPEECH = "azure-speech"
    AZURE_OPENAI = "azure-openai"
    OPENAI_COMPATIBLE = "openai-compatible"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    provider: str
    label: str
    classroom_id: str | None
    fingerprint: str
    created_at: datetime
    rotated_at: datetime | None


class UnknownKey(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no provider key {key_id!r}")


_INFO_COLUMNS = (
    provider_keys.c.id, provider_keys.c.provider, provider_keys.c.label, provider_keys.c.classroom_id,
    provider_keys.c.fingerprint, provider_keys.c.created_at, provider_keys.c.rotated_at,
)


def fingerprint(secret: str) -> str:
    return secret[-FINGERPRINT_CHARS:]


def _checked(secret: SecretStr) -> str:
    value = secret.get_secret_value().strip()  # a pasted key often brings a newline along
    if not MIN_SECRET_CHARS <= len(value) <= MAX_SECRET_CHARS:
        # The length, never the value, in the message.
        raise ValueError(f"a provider key has {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters")
    return value


def _utc(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; they were written in UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _info(row: Row[Any]) -> KeyInfo:
    return KeyInfo(
        id=row.id, provider=row.provider, label=row.label, classroom_id=row.classroom_id,
        fingerprint=row.fingerprint, created_at=_utc(row.created_at),
        rotated_at=None if row.rotated_at is None else _utc(row.rotated_at),
    )


async def create_key(
    engine: AsyncEngine, box: SecretBox, *, provider: str, label: str, secret: SecretStr,
    classroom_id: str | None = None,
) -> KeyInfo:
    if provider not in KEY_PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(KEY_PROVIDERS)}")
    value = _checked(secret)
    info = KeyInfo(
        id=f"key_{secrets.token_urlsafe(12)}", provider=provider, label=label.strip(),
        classroom_id=classroom_id, fingerprint=fingerprint(value), created_at=datetime.now(UTC),
        rotated_at=None,
    )
    async with engine.begin() as connection:
        await connection.execute(
            insert(provider_keys).values(
                id=info.id, provider=info.provider, label=info.label, classroom_id=info.classroom_id,
                ciphertext=box.encrypt(value), fingerprint=info.fingerprint, created_at=info.created_at,
                rotated_at=None,
            )
        )
    return info


async def list_keys(engine: AsyncEngine, *, classroom_id: str | None = None) -> list[KeyInfo]:
    query = select(*_INFO_COLUMNS).order_by(provider_keys.c.created_at, provider_keys.c.id)
    if classroom_id is not None:
        query = query.where(provider_keys.c.classroom_id == classroom_id)
    async with engine.connect() as connection:
        return [_info(row) for row in await connection.execute(query)]


async def get_key(engine: AsyncEngine, key_id: str) -> KeyInfo:
    async with engine.connect() as connection:
        row = (await connection.execute(select(*_INFO_COLUMNS).where(provider_keys.c.id == key_id))).first()
    if row is None:
        raise UnknownKey(key_id)
    return _info(row)


async def delete_key(engine: AsyncEngine, key_id: str) -> None:
    async with engine.begin() as connection:
        result = await connection.execute(delete(provider_keys).where(provider_keys.c.id == key_id))
    if result.rowcount == 0:
        raise UnknownKey(key_id)


async def replace_secret(engine: AsyncEngine, box: SecretBox, key_id: str, secret: SecretStr) -> KeyInfo:
    """The school's new key under the same id (what usage rows and caps refer to)."""
    value = _checked(secret)
    async with engine.begin() as connection:
        result = await connection.execute(
            update(provider_keys)
            .where(provider_keys.c.id == key_id)
            .values(
                ciphertext=box.encrypt(value), fingerprint=fingerprint(value), rotated_at=datetime.now(UTC)
            )
        )
    if result.rowcount == 0:
        raise UnknownKey(key_id)
    return await get_key(engine, key_id)


async def read_secret(engine: AsyncEngine, box: SecretBox, key_id: str) -> SecretStr:
    async with engine.connect() as connection:
        ciphertext = (
            await connection.execute(select(provider_keys.c.ciphertext).where(provider_keys.c.id == key_id))
        ).scalar_one_or_none()
    if ciphertext is None:
        raise UnknownKey(key_id)
    return box.decrypt(ciphertext)


async def reencrypt_all(engine: AsyncEngine, box: SecretBox) -> int:
    """Every stored key re-encrypted under the newest server secret; how many there are.

    All or nothing: one key that no configured secret decrypts stops the rotation (WrongServerSecret)
    and changes nothing. A key replaced meanwhile by a running server is left as that server wrote it.
    """
    async with engine.begin() as connection:
        rows = (await connection.execute(select(provider_keys.c.id, provider_keys.c.ciphertext))).all()
        for row in rows:
            await connection.execute(
                update(provider_keys)
                .where(provider_keys.c.id == row.id, provider_keys.c.ciphertext == row.ciphertext)
                .values(ciphertext=box.rotate(row.ciphertext))
            )
    return len(rows)
