"""Provider keys are encrypted under the server secret; a rotation keeps every key readable."""

from __future__ import annotations

import stat

import pytest
from pydantic import ValidationError

from voice_server.keys.vault import (
    SECRETS_FILE,
    SecretBox,
    WrongServerSecret,
    add_kept_secret,
    keep_only_newest,
    server_secrets,
)
from voice_server.settings import SecretsSettings, Settings

OLD, NEW = "old-server-secret-" + "a" * 32, "new-server-secret-" + "b" * 32
KEY = "azure-test-key-0123456789abcdef"


def test_a_key_is_encrypted_and_decrypts_only_under_its_server_secret():
    token = SecretBox([OLD]).encrypt(KEY)
    assert KEY not in token
    assert SecretBox([OLD]).decrypt(token).get_secret_value() == KEY
    assert SecretBox([OLD]).encrypt(KEY) != token  # a fresh IV each time: equal keys do not show
    with pytest.raises(WrongServerSecret, match="CONVERGIO_SECRETS__PREVIOUS_KEYS") as refused:
        SecretBox([NEW]).decrypt(token)
    assert KEY not in str(refused.value)


def test_during_a_rotation_keys_under_the_old_secret_still_decrypt_and_rotate_to_the_new():
    under_old = SecretBox([OLD]).encrypt(KEY)
    rotating = SecretBox([NEW, OLD])  # the new secret configured, the old one listed as previous
    assert rotating.decrypt(under_old).get_secret_value() == KEY
    rotated = rotating.rotate(under_old)
    assert rotated != under_old
    assert SecretBox([NEW]).decrypt(rotated).get_secret_value() == KEY  # the old secret can go
    with pytest.raises(WrongServerSecret):
        SecretBox([OLD]).decrypt(rotated)
    with pytest.raises(WrongServerSecret):
        SecretBox([NEW]).rotate(SecretBox(["another-secret-" + "c" * 32]).encrypt(KEY))


def test_a_decrypted_key_is_a_secret_str_that_hides_itself():
    secret = SecretBox([OLD]).decrypt(SecretBox([OLD]).encrypt(KEY))
    assert KEY not in repr(secret) and KEY not in str(secret)


def test_the_configured_secret_comes_first_and_is_checked():
    settings = SecretsSettings(key=NEW, previous_keys=[OLD])  # type: ignore[arg-type,list-item]
    assert server_secrets(settings, data_dir=None) == [NEW, OLD]  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least 32"):
        SecretsSettings(key="short")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="PREVIOUS_KEYS needs CONVERGIO_SECRETS__KEY"):
        SecretsSettings(previous_keys=[OLD])  # type: ignore[list-item]


def test_the_environment_sets_the_secret_and_the_previous_ones(monkeypatch):
    monkeypatch.setenv("CONVERGIO_SECRETS__KEY", NEW)
    monkeypatch.setenv("CONVERGIO_SECRETS__PREVIOUS_KEYS", f'["{OLD}"]')
    secrets = Settings().secrets
    assert secrets.key is not None and secrets.key.get_secret_value() == NEW
    assert [s.get_secret_value() for s in secrets.previous_keys] == [OLD]
    assert NEW not in repr(Settings())


def test_without_configuration_a_secret_is_made_once_kept_0600_and_rotated_in_the_file(tmp_path):
    made = server_secrets(SecretsSettings(), tmp_path)
    path = tmp_path / SECRETS_FILE
    assert len(made) == 1 and len(made[0]) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server_secrets(SecretsSettings(), tmp_path) == made  # kept

    add_kept_secret(tmp_path)
    rotating = server_secrets(SecretsSettings(), tmp_path)
    assert rotating[1:] == made and rotating[0] != made[0]  # the new one first, the old still there
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keep_only_newest(tmp_path)
    assert server_secrets(SecretsSettings(), tmp_path) == rotating[:1]
    assert [p.name for p in tmp_path.iterdir()] == [SECRETS_FILE]  # no staging file left behind
