"""The server secret, and what it encrypts: provider keys at rest, as Fernet tokens
(AES-128-CBC with HMAC-SHA256, from `cryptography`).

The configured secret is any random string of at least 32 characters (like the signing secret);
each one is stretched with HKDF into a Fernet key. Newest first: the first encrypts, all decrypt
(MultiFernet), so keys stored under an older secret stay readable while `keys rotate` re-encrypts
them under the newest.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from voice_server.auth.secret import load_or_create_secret
from voice_server.settings import SecretsSettings

SECRETS_FILE = "secrets-key"
MIN_SECRET_CHARS = 32
# Binds the derived key to this one use: the same string as another secret gives another key.
_HKDF_INFO = b"convergio-voice provider keys v1"


class WrongServerSecret(RuntimeError):
    """A stored key does not decrypt under any configured server secret."""

    def __init__(self) -> None:
        super().__init__(
            "a stored provider key cannot be decrypted with the configured server secret: if "
            "CONVERGIO_SECRETS__KEY was changed, list the one before it in "
            "CONVERGIO_SECRETS__PREVIOUS_KEYS (or the secrets-key file's, if one was made) and run "
            "`convergio-voice keys rotate`"
        )


def _fernet(secret: str) -> Fernet:
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"a server secret needs at least {MIN_SECRET_CHARS} characters")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts under the newest server secret, decrypts under any of them."""

    def __init__(self, server_secrets: Sequence[str]) -> None:
        if not server_secrets:
            raise ValueError("at least one server secret is needed")
        self._fernet = MultiFernet([_fernet(s) for s in server_secrets])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> SecretStr:
        try:
            return SecretStr(self._fernet.decrypt(token.encode("ascii")).decode())
        except InvalidToken:
            raise WrongServerSecret() from None

    def rotate(self, token: str) -> str:
        """The same plaintext, encrypted under the newest secret."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise WrongServerSecret() from None


def server_secrets(settings: SecretsSettings, data_dir: Path) -> list[str]:
    """Newest first: the configured ones, or those kept in the data directory (made on first use)."""
    if settings.key is not None:
        return [settings.key.get_secret_value(), *(s.get_secret_value() for s in settings.previous_keys)]
    kept = load_or_create_secret(data_dir, SECRETS_FILE, what="provider key encryption")
    return [line.strip() for line in kept.splitlines() if line.strip()]


def add_kept_secret(data_dir: Path) -> None:
    """Put a new random secret on top of the kept file; the older ones stay, to decrypt with."""
    _write_kept(data_dir, [secrets.token_urlsafe(48), *server_secrets(SecretsSettings(), data_dir)])


def keep_only_newest(data_dir: Path) -> None:
    """After every key was re-encrypted: the older kept secrets are no longer needed."""
    _write_kept(data_dir, server_secrets(SecretsSettings(), data_dir)[:1])


def _write_kept(data_dir: Path, lines: list[str]) -> None:
    path = data_dir / SECRETS_FILE
    staged = path.with_name(f".{SECRETS_FILE}.{os.getpid()}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")
        file.flush()
        os.fsync(file.fileno())
    # A crash leaves the old file or the new one, never half of one.
    os.replace(staged, path)
