"""A secret the server keeps when none is configured (the token signing secret; the secret that
encrypts provider keys, voice_server/keys/vault.py): made once, kept in the data directory with
mode 0600, so a restart keeps the tokens it signed valid and the keys it stored readable."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

SECRET_FILE = "auth-secret"


def load_or_create_secret(data_dir: Path, filename: str = SECRET_FILE, *, what: str = "token signing") -> str:
    """The secret kept in `data_dir/filename`, made (random, mode 0600) when there is none."""
    path = data_dir / filename
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two servers starting at once cannot both write (the loser reads the winner's).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(48))
    log.info("made a new %s secret in %s", what, path)  # the path, never the secret
    return _read(path)


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone loosened it (a copy, a backup restore): tighten it rather than refuse to start.
        log.warning("%s was readable by others (mode %o); now 0600", path, mode)
        os.chmod(path, 0o600)
    secret = path.read_text().strip()
    if not secret:
        raise RuntimeError(f"{path} is empty: delete it and a new secret is made at the next start")
    return secret
