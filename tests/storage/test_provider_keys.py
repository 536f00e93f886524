"""Provider keys a school brings, on each backend: encrypted at rest, masked when listed,
re-encrypted by a rotation, refused under the wrong server secret or in privacy mode."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server import cli
from voice_server.keys import store
from voice_server.keys.resolver import KeysRefused, ProviderKeys
from voice_server.keys.store import UnknownKey
from voice_server.keys.vault import SecretBox, WrongServerSecret
from voice_server.store import migrate
from voice_server.store.schema import provider_keys

OLD, NEW = "old-server-secret-" + "a" * 32, "new-server-secret-" + "b" * 32
KEY = "azure-speech-key-TEST-0123456789abcdef"
OTHER_KEY = "azure-speech-key-NEXT-fedcba9876543210"


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    await migrate.upgrade(engine)
    return engine


async def _raw_rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as connection:
        return [dict(row._mapping) for row in await connection.execute(select(provider_keys))]


async def _store(engine: AsyncEngine, box: SecretBox, secret: str = KEY, **kwargs: str) -> store.KeyInfo:
    kwargs.setdefault("provider", "azure-speech")
    kwargs.setdefault("label", "Hillside primary")
    return await store.create_key(engine, box, secret=SecretStr(secret), **kwargs)  # type: ignore[arg-type]


async def test_a_key_is_stored_encrypted_and_only_its_fingerprint_is_in_the_clear(db: AsyncEngine):
    info = await _store(db, SecretBox([OLD]), classroom_id="cls_4b")
    assert info.id.startswith("key_") and info.fingerprint == KEY[-4:] and info.rotated_at is None
    [row] = await _raw_rows(db)
    assert all(KEY not in str(value) for value in row.values())  # no column holds the plaintext
    assert KEY[:-4] not in str(row)
    assert (await store.list_keys(db)) == [info]
    assert (await store.list_keys(db, classroom_id="cls_other")) == []
    assert (await store.read_secret(db, SecretBox([OLD]), info.id)).get_secret_value() == KEY


async def test_a_replaced_secret_keeps_the_id_and_a_deleted_key_is_gone(db: AsyncEngine):
    box = SecretBox([OLD])
    info = await _store(db, box)
    replaced = await store.replace_secret(db, box, info.id, SecretStr(OTHER_KEY + "\n"))
    assert (replaced.id, replaced.fingerprint) == (info.id, OTHER_KEY[-4:]) and replaced.rotated_at
    assert (await store.read_secret(db, box, info.id)).get_secret_value() == OTHER_KEY
    await store.delete_key(db, info.id)
    assert await store.list_keys(db) == []
    for call in (store.delete_key(db, info.id), store.read_secret(db, box, info.id),
                 store.replace_secret(db, box, info.id, SecretStr(KEY))):
        with pytest.raises(UnknownKey):
            await call


async def test_a_short_key_or_an_unknown_provider_is_refused_without_echoing_it(db: AsyncEngine):
    with pytest.raises(ValueError, match="16 to 4096 characters") as refused:
        await _store(db, SecretBox([OLD]), secret="sk-short-key")
    assert "sk-short-key" not in str(refused.value)
    with pytest.raises(ValueError, match="unknown provider"):
        await _store(db, SecretBox([OLD]), provider="aws")
    assert await _raw_rows(db) == []


async def test_rotation_re_encrypts_every_key_so_the_old_secret_can_go(db: AsyncEngine):
    first = await _store(db, SecretBox([OLD]))
    second = await _store(db, SecretBox([OLD]), secret=OTHER_KEY, provider="azure-openai")
    before = {row["id"]: row["ciphertext"] for row in await _raw_rows(db)}

    rotating = SecretBox([NEW, OLD])
    assert (await store.read_secret(db, rotating, first.id)).get_secret_value() == KEY  # readable meanwhile
    assert await store.reencrypt_all(db, rotating) == 2
    after = {row["id"]: row["ciphertext"] for row in await _raw_rows(db)}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)

    new_only = SecretBox([NEW])
    assert (await store.read_secret(db, new_only, first.id)).get_secret_value() == KEY
    assert (await store.read_secret(db, new_only, second.id)).get_secret_value() == OTHER_KEY
    with pytest.raises(WrongServerSecret):
        await store.read_secret(db, SecretBox([OLD]), first.id)


async def test_a_rotation_without_the_old_secret_fails_clearly_and_changes_nothing(db: AsyncEngine):
    await _store(db, SecretBox([OLD]))
    before = await _raw_rows(db)
    with pytest.raises(WrongServerSecret, match="CONVERGIO_SECRETS__PREVIOUS_KEYS"):
        await store.reencrypt_all(db, SecretBox([NEW]))
    assert await _raw_rows(db) == before


async def test_resolve_decrypts_on_demand_and_is_refused_in_privacy_mode(db: AsyncEngine):
    info = await _store(db, SecretBox([OLD]))
    keys = ProviderKeys(db, lambda: [OLD], privacy_mode=False)
    resolved = await keys.resolve(info.id)
    assert resolved.get_secret_value() == KEY and KEY not in repr(resolved)
    with pytest.raises(UnknownKey):
        await keys.resolve("key_unknown")
    with pytest.raises(WrongServerSecret):
        await ProviderKeys(db, lambda: [NEW], privacy_mode=False).resolve(info.id)

    private = ProviderKeys(db, lambda: pytest.fail("privacy mode read the server secret"), privacy_mode=True)
    with pytest.raises(KeysRefused, match="privacy mode") as refused:
        await private.resolve(info.id)
    assert "CONVERGIO_PRIVACY__MODE" in str(refused.value)


def _cli_env(monkeypatch: pytest.MonkeyPatch, url: str, tmp_path, *secrets: str) -> None:
    monkeypatch.setenv("CONVERGIO_STORAGE__URL", url)
    monkeypatch.setenv("CONVERGIO_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONVERGIO_ENGINES__TURN", "none")
    if secrets:
        monkeypatch.setenv("CONVERGIO_SECRETS__KEY", secrets[0])
        monkeypatch.setenv("CONVERGIO_SECRETS__PREVIOUS_KEYS", str(list(secrets[1:])).replace("'", '"'))


def test_keys_rotate_re_encrypts_under_the_configured_newest_secret(
    database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import asyncio

    from voice_server.store.engine import create_engine

    async def stored_then(check):  # type: ignore[no-untyped-def]
        engine = create_engine(database_url)
        try:
            await migrate.upgrade(engine)
            return await check(engine)
        finally:
            await engine.dispose()

    info = asyncio.run(stored_then(lambda e: _store(e, SecretBox([OLD]))))
    _cli_env(monkeypatch, database_url, tmp_path, NEW)  # the old secret forgotten: refused
    assert cli.main(["keys", "rotate"]) == 2
    err = capsys.readouterr().err
    assert "CONVERGIO_SECRETS__PREVIOUS_KEYS" in err and KEY not in err

    _cli_env(monkeypatch, database_url, tmp_path, NEW, OLD)
    assert cli.main(["keys", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "re-encrypted 1 provider key(s)" in out and "remove it" in out and KEY not in out
    assert cli.main(["keys", "rotate", "--new-secret"]) == 2  # the file is not the configured secret
    resolved = asyncio.run(stored_then(lambda e: store.read_secret(e, SecretBox([NEW]), info.id)))
    assert resolved.get_secret_value() == KEY


def test_keys_rotate_new_secret_replaces_the_kept_secret(
    database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import asyncio

    from voice_server.keys.vault import SECRETS_FILE, server_secrets
    from voice_server.settings import SecretsSettings
    from voice_server.store.engine import create_engine

    data = tmp_path / "data"
    [kept] = server_secrets(SecretsSettings(), data)

    async def run(action):  # type: ignore[no-untyped-def]
        engine = create_engine(database_url)
        try:
            await migrate.upgrade(engine)
            return await action(engine)
        finally:
            await engine.dispose()

    info = asyncio.run(run(lambda e: _store(e, SecretBox([kept]))))
    _cli_env(monkeypatch, database_url, tmp_path)
    assert cli.main(["keys", "rotate", "--new-secret"]) == 0
    [newest] = (data / SECRETS_FILE).read_text().split()
    assert newest != kept
    resolved = asyncio.run(run(lambda e: store.read_secret(e, SecretBox([newest]), info.id)))
    assert resolved.get_secret_value() == KEY
    assert kept not in capsys.readouterr().out
