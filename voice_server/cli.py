"""`convergio-voice serve` and `convergio-voice doctor`."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
from typing import Any

from models.base import ModelNotInstalledError
from models.registry import ENGINES
from pipelines.personas import PERSONAS
from voice_server.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from voice_server.app import create_app

    overrides: dict[str, Any] = {}
    for key in ("host", "port", "default_persona", "max_reply_tokens"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    settings = Settings(**overrides)
    engines = settings.engines.model_copy(
        update={k: v for k in ("vad", "stt", "llm", "tts") if (v := getattr(args, k)) is not None}
    )
    turn = settings.turn.model_copy(
        update={"end_of_turn_silence_ms": args.end_of_turn_ms} if args.end_of_turn_ms else {}
    )
    budgets = settings.budgets
    if args.budget_v2v_ms:
        v2v = budgets.voice_to_voice.model_copy(update={"ms": args.budget_v2v_ms})
        budgets = budgets.model_copy(update={"voice_to_voice": v2v})
    settings = settings.model_copy(update={"engines": engines, "turn": turn, "budgets": budgets})
    if settings.default_persona not in PERSONAS:
        print(f"unknown persona {settings.default_persona!r}; known: {', '.join(PERSONAS)}", file=sys.stderr)
        return 2

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # faster-whisper logs every call at INFO; keep the server log about sessions, not inference.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    server: uvicorn.Server | None = None

    def announce() -> None:
        host, port = settings.host, settings.port
        for sock_server in getattr(server, "servers", []):
            for sock in sock_server.sockets:
                host, port = sock.getsockname()[:2]
        print(f"convergio-voice ready: ws://{host}:{port}/v1/ws (http://{host}:{port}/readyz)", flush=True)

    config = uvicorn.Config(
        create_app(settings, on_ready=announce),
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
    server = uvicorn.Server(config)
    server.run()
    return 0


def _doctor(args: argparse.Namespace) -> int:
    settings = Settings()
    chosen = {
        "vad": settings.engines.vad,
        "stt": settings.engines.stt,
        "llm": settings.engines.llm,
        "tts": settings.engines.tts,
    }
    failures = 0
    for kind, specs in ENGINES.items():
        for name, spec in specs.items():
            marker = "*" if chosen.get(kind) == name else " "
            module = spec.target.partition(":")[0]
            try:
                if importlib.util.find_spec(module) is None:
                    raise ModelNotInstalledError(spec.description, spec.install)
                if args.load or chosen.get(kind) == name:
                    started = time.perf_counter()
                    engine = spec.load()
                    status = f"ok, loads in {time.perf_counter() - started:.1f} s"
                    del engine
                else:
                    status = "installed"
            except ModelNotInstalledError as exc:
                status = f"MISSING: {exc}"
                failures += chosen.get(kind) == name
            except Exception as exc:  # noqa: BLE001
                status = f"BROKEN: {exc}. Reinstall with: {spec.install}"
                failures += chosen.get(kind) == name
            print(f"{marker} {kind:4} {name:16} {spec.description:48} {status}")
    print("\n* = configured engine")
    if failures:
        print(f"{failures} configured engine(s) cannot run; install what is named above.")
        return 1
    print("All configured engines are installed and load.")
    return 0


def main(argv: list[str] | None = None) -> int:
    # llama.cpp and CTranslate2 each bring an OpenMP runtime whose idle workers spin by default;
    # on two cores that spinning starves the other stages (see FIELD-NOTES). Sleep instead.
    # Must be set before either library loads, which happens only when engines are created.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(prog="convergio-voice", description="Real-time voice tutoring server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (offline embedded models by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--persona", dest="default_persona", help=f"default persona: {', '.join(PERSONAS)}")
    serve.add_argument("--max-reply-tokens", type=int)
    for kind, specs in ENGINES.items():
        serve.add_argument(f"--{kind}", choices=sorted(specs), help=f"{kind} engine")
    serve.add_argument("--end-of-turn-ms", type=int, help="silence that ends a student's turn")
    serve.add_argument("--budget-v2v-ms", type=int, help="voice-to-voice budget in ms")
    serve.set_defaults(func=_serve)
    doctor = sub.add_parser("doctor", help="check which engines and models are installed and load")
    doctor.add_argument("--load", action="store_true", help="also load engines that are not configured")
    doctor.set_defaults(func=_doctor)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
