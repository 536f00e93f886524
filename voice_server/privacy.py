"""Privacy mode: no audio or text of a student leaves this machine.

Two locks, so one mistake is not enough:
- at configuration, an engine that is not local (`EngineSpec.local`) or an ICE server (STUN or
  TURN, which learns every peer's address) is refused with a clear error (`Settings`);
- at run time the server process fails closed: a Python audit hook refuses every outgoing TCP
  connection, and every name lookup, that is not for this machine. An engine adapter added later
  that forgets the rule still cannot reach a service.

WebRTC media is UDP between the server and the student's browser, which is the point of the
server, so it is not blocked; the first lock keeps third-party relays out of it.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

_WHY = "it would leave this machine"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})


class PrivacySettings(BaseModel):
    """Example: CONVERGIO_PRIVACY__MODE=true, or for some classrooms only
    CONVERGIO_PRIVACY__CLASSROOMS='["cls_4f2a", "cls_9b1c"]'."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: bool = False  # the whole server: only local engines, and no connection leaves it
    # Classrooms held to privacy mode on a server whose other classrooms may use cloud engines:
    # their sessions get only the engines that run on this machine (each kind's chain without
    # the others), so every kind needs a local engine in its chain. The process-wide lock (the
    # audit hook) belongs to `mode`; a classroom's lock is that its sessions hold no other engine.
    classrooms: frozenset[str] = frozenset()

    def applies_to(self, classroom_id: str | None) -> bool:
        return self.mode or (classroom_id is not None and classroom_id in self.classrooms)


class PrivacyRefused(RuntimeError):
    """A session under privacy mode would need an engine that does not run on this machine."""


class OutboundRefused(PermissionError):
    """Privacy mode refused a connection or lookup that would leave the machine."""


def is_local_address(host: str) -> bool:
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a name other than localhost: resolving it may already tell someone
    return address.is_loopback or address.is_unspecified


def _is_numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class _OutboundGuard:
    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed  # hosts named in the configuration, e.g. the database server

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            sock, address = args[0], args[1]
            if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                return  # UDP media to the student's browser, Unix sockets: not a service call
            host = str(address[0] if isinstance(address, tuple) else address)
            if not (is_local_address(host) or host in self.allowed):
                raise OutboundRefused(
                    f"privacy mode: connection to {host} refused (it would leave this machine)"
                )
        elif event == "socket.getaddrinfo":
            host = args[0].decode("ascii", "replace") if isinstance(args[0], bytes) else args[0]
            # A numeric address is not looked up (binding to a classroom LAN address is fine).
            allowed = host is None or is_local_address(host) or _is_numeric(host) or host in self.allowed
            if not allowed:
                raise OutboundRefused(
                    f"privacy mode: looking up {host} refused (it would leave this machine)"
                )


_installed: _OutboundGuard | None = None


def fail_closed(allowed_hosts: Iterable[str] = ()) -> None:
    """Install the run-time lock for the rest of this process (audit hooks cannot be removed,
    which is what makes them a lock). `allowed_hosts`: hosts the configuration itself names
    (the database server). Idempotent."""
    global _installed
    if _installed is None:
        _installed = _OutboundGuard(frozenset(allowed_hosts))
        sys.addaudithook(_installed)


def refused_engines(chains: Iterable[tuple[str, str, bool]]) -> list[str]:
    """The configured engines privacy mode refuses: (kind, name, local) in, 'kind name' out."""
    return [f"{kind} engine {name!r}" for kind, name, local in chains if not local]
