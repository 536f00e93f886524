"""`convergio-voice serve`, `doctor`, `db upgrade|current|settle`, `admin create` and `keys rotate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from models.registry import ENGINES
from pipelines.config import TurnConfig
from pipelines.personas import PERSONAS
from voice_server import privacy
from voice_server.settings import KINDS, NO_ENGINE, OPTIONAL_KINDS, Settings
from voice_server.store import migrate

T = TypeVar("T")


class SettingsError(ValueError):
    """Settings from the environment and command line do not validate; the message says which."""


# Command-line options and the settings they set: the settings model holds their definitions
# (defaults, limits), the CLI only names them.
SERVE_OPTIONS: dict[str, tuple[str, ...]] = {
    "host": ("host",),
    "port": ("port",),
    "default_persona": ("default_persona",),
    "max_reply_tokens": ("max_reply_tokens",),
    **{kind: ("engines", kind) for kind in (*KINDS, *OPTIONAL_KINDS)},
    "end_of_turn_ms": ("turn", "end_of_turn_silence_ms"),
    "budget_v2v_ms": ("budgets", "voice_to_voice", "ms"),
    "auth_mode": ("auth", "mode"),
}


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command line's options on top, validated alike:
    the options go in as nested init values, which pydantic-settings deep-merges with the
    environment's before validating the whole."""
    nested: dict[str, Any] = {}
    for option, path in SERVE_OPTIONS.items():
        value = getattr(args, option, None)
        if value is None:
            continue
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    try:
        return Settings(**nested)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    flags = {path: "--" + option.replace("_", "-") for option, path in SERVE_OPTIONS.items()}
    flags[("default_persona",)] = "--persona"
    flags[("auth", "mode")] = "--open"
    lines = ["invalid settings:"]
    for error in exc.errors():
        path = tuple(str(p) for p in error["loc"])
        env = "CONVERGIO_" + "__".join(path).upper()
        where = f"{flags[path]} or {env}" if path in flags else env
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {'.'.join(path) or 'settings'} ({where}): {message}")
    return "\n".join(lines)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2

    from voice_server.auth.guard import OpenModeRefused, check_open_mode

    try:
        check_open_mode(settings.auth, settings.host)
    except OpenModeRefused as exc:
        print(f"convergio-voice: {exc}", file=sys.stderr)
        return 2

    if settings.privacy.mode:
        # Before anything can connect anywhere: from here on this process cannot reach a service.
        privacy.fail_closed(settings.privacy_allowed_hosts())
        print(
            "convergio-voice: privacy mode: only local engines; no connection leaves this machine", flush=True
        )

    # Before any model loads: a new database is created here, an outdated one stops the start.
    try:
        _on_database(settings, migrate.ensure_schema)
    except (migrate.SchemaError, DatabaseUnavailable) as exc:
        print(f"convergio-voice: {exc}", file=sys.stderr)
        return 2
    settings = _with_kept_secret(settings)

    import uvicorn

    from voice_server.app import create_app
    from voice_server.auth import redact
    from voice_server.auth.tokens import Role

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # faster-whisper logs every call at INFO; keep the server log about sessions, not inference.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: usernames, password hashes.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    server: uvicorn.Server | None = None

    def announce() -> None:
        host, port = settings.host, settings.port
        for sock_server in getattr(server, "servers", []):
            for sock in sock_server.sockets:
                host, port = sock.getsockname()[:2]
        print(f"convergio-voice ready: ws://{host}:{port}/v1/ws (http://{host}:{port}/readyz)", flush=True)
        # A newcomer at the console is talking at once: a single-use student link, short-lived.
        # It goes to the console only, as a one-time code: never a token or the secret.
        if settings.auth.mode == "open":
            print(f"open mode, no sign-in: http://{host}:{port}/", flush=True)
        else:
            code = app.state.auth.signin_codes.issue(Role.STUDENT)
            minutes = settings.auth.signin_code_ttl_s // 60
            link = f"http://{host}:{port}/#signin={code}"
            print(f"student sign-in link (works once, for {minutes} min): {link}", flush=True)

    app = create_app(settings, on_ready=announce)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws="websockets-sansio",
        # Refuse oversized frames with close code 1009 before buffering them (uvicorn's default is 16 MiB).
        ws_max_size=settings.limits.max_frame_bytes,
        ws_max_queue=8,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
    # uvicorn logs every path with its query string, where a one-time WebSocket ticket may be.
    redact.install("uvicorn.access", "uvicorn.error")
    server = uvicorn.Server(config)
    server.run()
    return 0


def _with_kept_secret(settings: Settings) -> Settings:
    """The settings with a signing secret: the configured one, or the one kept in the data
    directory (made on first start) so tokens survive a restart."""
    if settings.auth.mode == "open" or settings.auth.secret is not None:
        return settings
    from pydantic import SecretStr

    from voice_server.auth.secret import load_or_create_secret

    secret = SecretStr(load_or_create_secret(settings.storage.data_dir))
    auth = settings.auth.model_copy(update={"secret": secret})
    return settings.model_copy(update={"auth": auth})


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened; the message names it (without its password)."""


def _on_database(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from voice_server.store.engine import create_engine

    url = settings.storage.database_url

    async def run() -> T:
        engine = create_engine(url)
        try:
            return await action(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"cannot use the database {shown}: {exc}") from None


async def _settle(engine: Any, instance: str) -> int:
    from voice_server.ledger import repository

    await migrate.ensure_schema(engine)
    return await repository.settle_in_flight(engine, instance=instance)


def _db(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(argparse.Namespace())
        if args.db_command == "upgrade":
            status = _on_database(settings, migrate.upgrade)
            print(f"database schema at revision {status.current} (latest)")
            return 0
        if args.db_command == "settle":
            settled = _on_database(settings, lambda engine: _settle(engine, args.instance))
            print(f"settled {settled} turn(s) that {args.instance} left in flight")
            return 0
        status = _on_database(settings, migrate.schema_status)
    except (SettingsError, DatabaseUnavailable, migrate.SchemaError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"database schema: {status.state} (revision {status.current or 'none'}, latest {status.head})")
    # Scripts can ask "is an upgrade needed?" from the exit status.
    return 0 if status.state in (migrate.SchemaState.CURRENT, migrate.SchemaState.EMPTY) else 1


def _read_password(args: argparse.Namespace) -> str:
    """From stdin (--password-stdin) or a prompt: never from argv, which lands in shell history."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    if not sys.stdin.isatty():
        raise ValueError("no terminal to prompt on: pipe the password in with --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise ValueError("the passwords differ")
    return password


def _admin(args: argparse.Namespace) -> int:
    from voice_server.auth import accounts
    from voice_server.auth.passwords import WeakPassword
    from voice_server.auth.tokens import Role

    try:
        settings = settings_from_args(argparse.Namespace())
        password = _read_password(args)
        role = Role(args.role)

        async def create(engine: Any) -> accounts.Account:
            await migrate.ensure_schema(engine)
            return await accounts.create_account(engine, args.username, password, role)

        account = _on_database(settings, create)
    except (SettingsError, DatabaseUnavailable, migrate.SchemaError, WeakPassword, ValueError) as exc:
        print(f"convergio-voice: {exc}", file=sys.stderr)
        return 2
    print(f"created {role.value} account {args.username!r} (id {account.id}); sign in at /v1/auth/sign-in")
    return 0


def _keys(args: argparse.Namespace) -> int:
    """Re-encrypt every stored provider key under the newest server secret."""
    from voice_server.keys import store, vault

    try:
        settings = settings_from_args(argparse.Namespace())
        data_dir, configured = settings.storage.data_dir, settings.secrets.key is not None
        if args.new_secret:
            if configured:
                raise ValueError(
                    "--new-secret replaces the secret kept in the data directory; with "
                    "CONVERGIO_SECRETS__KEY set, put the new secret there and the old one in "
                    "CONVERGIO_SECRETS__PREVIOUS_KEYS"
                )
            vault.add_kept_secret(data_dir)
        box = vault.SecretBox(vault.server_secrets(settings.secrets, data_dir))

        async def rotate(engine: Any) -> int:
            await migrate.ensure_schema(engine)
            return await store.reencrypt_all(engine, box)

        count = _on_database(settings, rotate)
    except (
        SettingsError, DatabaseUnavailable, migrate.SchemaError, vault.WrongServerSecret, ValueError
    ) as exc:
        print(f"convergio-voice: {exc}", file=sys.stderr)
        return 2
    if not configured:
        vault.keep_only_newest(data_dir)  # every key is readable under the newest alone now
    print(f"re-encrypted {count} provider key(s) under the newest server secret")
    if configured and settings.secrets.previous_keys:
        print("no stored key needs CONVERGIO_SECRETS__PREVIOUS_KEYS any more: remove it and restart")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from voice_server import doctor

    def settings(overrides: dict[str, Any]) -> Settings:
        try:
            return Settings(**overrides)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    try:
        chosen, privacy_mode, refusal = doctor.doctor_settings(settings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    return doctor.run(chosen, privacy_mode=privacy_mode, load_all=args.load, as_json=args.json, refusal=refusal)


def _probe(engine: Any) -> tuple[bool, str]:
    """A remote engine's tiny probe call (a one-token completion): its latency, or why not."""

    async def probe() -> float:
        try:
            return await engine.probe()
        finally:
            await engine.aclose()

    try:
        seconds = asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - the adapters' EngineError names the failure, never a key
        return False, f"; UNREACHABLE: {exc}"
    return True, f", reachable: 1-token probe in {seconds * 1000:.0f} ms"


def _runs_locally(spec: Any, settings: Settings, name: str) -> bool:
    try:
        return spec.runs_locally(settings.engines.options_for(name))
    except Exception:  # noqa: BLE001 - options not given (an unconfigured server engine)
        return spec.local


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convergio-voice", description="Real-time voice tutoring server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (offline embedded models by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--persona", dest="default_persona", help=f"default persona: {', '.join(PERSONAS)}")
    serve.add_argument("--max-reply-tokens", type=int)
    for kind, specs in ENGINES.items():
        optional = [NO_ENGINE] if kind in OPTIONAL_KINDS else []
        serve.add_argument(f"--{kind}", choices=sorted(specs) + optional, help=f"{kind} engine")
    end_of_turn = TurnConfig.model_fields["end_of_turn_silence_ms"].default
    serve.add_argument(
        "--end-of-turn-ms", type=int, help=f"silence that ends a student's turn (default {end_of_turn})"
    )
    serve.add_argument("--budget-v2v-ms", type=int, help="voice-to-voice budget in ms")
    serve.add_argument(
        "--open", dest="auth_mode", action="store_const", const="open",
        help="no sign-in, as a single local user (refused unless --host is a loopback address)",
    )
    serve.set_defaults(func=_serve)
    doctor = sub.add_parser(
        "doctor", help="check every engine: installed, configured, reachable (a timed probe call), refused"
    )
    doctor.add_argument("--load", action="store_true", help="also load and probe engines that are not configured")
    doctor.add_argument("--json", action="store_true", help="the report as JSON")
    doctor.set_defaults(func=_doctor)
    db = sub.add_parser(
        "db", help="the database: CONVERGIO_STORAGE__URL, or SQLite in CONVERGIO_STORAGE__DATA_DIR"
    )
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the schema migrations this version ships (back up first)")
    db_sub.add_parser("current", help="show the schema revision; exit 1 if an upgrade is needed")
    settle = db_sub.add_parser(
        "settle", help="settle the turns left in flight by a server that will not come back"
    )
    settle.add_argument("--instance", required=True, help="that server's CONVERGIO_STORAGE__INSTANCE")
    db.set_defaults(func=_db)
    admin = sub.add_parser("admin", help="accounts: teachers and admins who sign in with a password")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_sub.add_parser("create", help="create an account (the first admin, or a teacher)")
    create.add_argument("username")
    create.add_argument("--role", choices=["admin", "teacher"], default="admin")
    create.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )
    admin.set_defaults(func=_admin)
    keys = sub.add_parser("keys", help="provider keys a school brings, encrypted under the server secret")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate",
        help="re-encrypt every stored key under the newest server secret (CONVERGIO_SECRETS__KEY, "
        "with the old one in CONVERGIO_SECRETS__PREVIOUS_KEYS)",
    )
    rotate.add_argument(
        "--new-secret", action="store_true",
        help="when no secret is configured: make a new one in the data directory first (stop the server)",
    )
    keys.set_defaults(func=_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    # llama.cpp and CTranslate2 each bring an OpenMP runtime whose idle workers spin by default;
    # on two cores that spinning starves the other stages (see FIELD-NOTES). Sleep instead.
    # Must be set before either library loads, which happens only when engines are created.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
