"""What the server holds to use provider keys: the database, the server secret (read on first
use) and whether privacy mode forbids keys altogether. Engine adapters call `resolve`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.keys import store
from voice_server.keys.vault import SecretBox

log = logging.getLogger(__name__)


class KeysRefused(PermissionError):
    """Privacy mode: no provider key is handed out, so no cloud engine can be called with one."""


class ProviderKeys:
    def __init__(
        self, engine: AsyncEngine, server_secrets: Callable[[], Sequence[str]], *, privacy_mode: bool
    ) -> None:
        self.engine = engine
        # A callable: the secret is read (or made, in the data directory) only once keys are used.
        self._server_secrets = server_secrets
        self.privacy_mode = privacy_mode

    @functools.cached_property
    def box(self) -> SecretBox:
        return SecretBox(self._server_secrets())

    async def resolve(self, key_id: str) -> SecretStr:
        """The secret of a stored key, decrypted now, for one call to its provider.

        Refused (KeysRefused) in privacy mode before the database is read; UnknownKey for an id
        that is not stored; WrongServerSecret when no configured server secret decrypts it.
        """
        if self.privacy_mode:
            raise KeysRefused(
                f"privacy mode: provider key {key_id} is not used; only engines on this machine run "
                "(CONVERGIO_PRIVACY__MODE)"
            )
        secret = await store.read_secret(self.engine, self.box, key_id)
        log.debug("provider key %s resolved", key_id)  # the id, never the secret
        return secret
