"""`convergio-voice doctor`: every engine the registry knows, and for each whether it is

- installed: its modules are present and this machine can run it at all (`EngineSpec.check_installed`);
- configured: its options validate (the configured values, or its defaults);
- reachable: for the engines the settings use (and all of them with `--load`), it loads and
  answers a tiny probe call, timed: VAD one frame, STT half a second of silence, TTS "Hi", an LLM
  one token, a turn model half a second of silence;
- refused: under privacy mode, every engine that is not local.

It works from the registry alone (kinds, names, options models, `local`), so an engine added
there appears here with no edit.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from models.base import (
    ChatMessage,
    EngineError,
    GenerationRequest,
    ModelNotInstalledError,
    VoiceSettings,
)
from models.registry import ENGINES, EngineOptionsError, EngineSpec
from voice_server.settings import KINDS, NO_ENGINE, OPTIONAL_KINDS, Settings

PROBE_TIMEOUT_S = 30.0


@dataclass
class EngineReport:
    kind: str
    name: str
    local: bool
    description: str
    configured: bool  # chosen in the settings (or a fallback of the chosen one)
    installed: bool
    install_problem: str | None = None
    options_ok: bool = True
    options_problem: str | None = None
    refused: bool = False  # by privacy mode
    loaded_s: float | None = None
    probe: str | None = None  # what the probe did
    probe_s: float | None = None
    reachable: bool | None = None  # None: not tried
    error: str | None = None
    error_code: str | None = None

    @property
    def failed(self) -> bool:
        """A configured engine that cannot serve (a missing optional turn model only degrades)."""
        if not self.configured:
            return False
        if not self.installed:
            return self.kind not in OPTIONAL_KINDS
        return not self.options_ok or self.reachable is False or self.refused


async def _probe(kind: str, engine: Any) -> str:
    """One tiny real call; returns what it did."""
    if kind == "vad":
        stream = engine.new_stream()
        stream.is_speech(bytes(2 * stream.frame_samples))
        return "one silent frame"
    if kind == "stt":
        await engine.transcribe(np.zeros(engine.sample_rate // 2, dtype=np.float32))
        return "0.5 s of silence"
    if kind == "tts":
        async for _ in engine.synthesize("Hi", VoiceSettings()):
            break
        return "'Hi', first audio"
    if kind == "llm":
        request = GenerationRequest(messages=[ChatMessage("user", "Hi")], max_tokens=1)
        async for _ in engine.stream(request):
            pass
        return "one token"
    if kind == "turn":
        await engine.completion(np.zeros(engine.sample_rate // 2, dtype=np.float32))
        return "0.5 s of silence"
    return "none (no probe for this kind)"


async def _load_and_probe(report: EngineReport, spec: EngineSpec, options: Any) -> None:
    engine = None
    try:
        started = time.perf_counter()
        engine = await asyncio.to_thread(spec.load, options)
        report.loaded_s = time.perf_counter() - started
        started = time.perf_counter()
        report.probe = await asyncio.wait_for(_probe(spec.kind, engine), PROBE_TIMEOUT_S)
        report.probe_s = time.perf_counter() - started
        report.reachable = True
    except TimeoutError:
        report.reachable, report.error_code = False, "engine_unreachable"
        report.error = f"no answer to the probe within {PROBE_TIMEOUT_S:g} s"
    except EngineError as exc:
        report.reachable, report.error, report.error_code = False, str(exc), exc.code
    except ModelNotInstalledError as exc:
        report.installed, report.install_problem = False, str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken install or a bad option value at load
        report.reachable, report.error = False, f"{type(exc).__name__}: {exc}. Reinstall with: {spec.install}"
    finally:
        if engine is not None and hasattr(engine, "aclose"):
            try:
                await engine.aclose()
            except Exception:  # noqa: BLE001
                pass


def configured_engines(settings: Settings) -> dict[str, list[str]]:
    chosen = {kind: settings.engines.chain(kind) for kind in KINDS}
    chosen |= {kind: [getattr(settings.engines, kind)] for kind in OPTIONAL_KINDS}
    return chosen


async def examine(settings: Settings, *, load_all: bool = False, privacy_mode: bool = False) -> list[EngineReport]:
    chosen = configured_engines(settings)
    reports = []
    for kind, specs in ENGINES.items():
        for name, spec in specs.items():
            configured = name in chosen.get(kind, []) and name != NO_ENGINE
            report = EngineReport(kind, name, spec.local, spec.description, configured, installed=True)
            report.refused = privacy_mode and not spec.local
            reports.append(report)
            try:
                spec.check_installed()
            except ModelNotInstalledError as exc:
                report.installed, report.install_problem = False, str(exc)
            try:
                options = settings.engines.options_for(name)
            except (EngineOptionsError, ValidationError, ValueError) as exc:
                report.options_ok, report.options_problem = False, str(exc)
                continue
            # A server engine is local or not by where its options point (a loopback base URL).
            report.local = spec.runs_locally(options)
            report.refused = privacy_mode and not report.local
            if report.installed and not report.refused and (configured or load_all):
                await _load_and_probe(report, spec, options)
    return reports


def _status(report: EngineReport) -> str:
    if report.refused:
        return "REFUSED by privacy mode (not local)"
    if not report.installed:
        return f"MISSING: {report.install_problem}"
    if not report.options_ok:
        return f"{'NOT CONFIGURED' if report.configured else 'needs options'}: {report.options_problem}"
    if report.reachable is None:
        return "installed"
    if report.reachable:
        return f"ok: loads in {report.loaded_s:.1f} s, probe ({report.probe}) {1000 * (report.probe_s or 0):.0f} ms"
    code = f" [{report.error_code}]" if report.error_code else ""
    return f"UNREACHABLE{code}: {report.error}"


def render(reports: list[EngineReport], *, privacy_mode: bool) -> str:
    lines = []
    for r in reports:
        marker = "*" if r.configured else " "
        where = "local" if r.local else "remote"
        lines.append(f"{marker} {r.kind:4} {r.name:16} {where:6} {r.description}")
        lines.append(f"       {_status(r)}")
    lines.append("")
    lines.append("* = configured engine (or fallback); probes are timed tiny real calls")
    if privacy_mode:
        refused = [f"{r.kind} {r.name}" for r in reports if not r.local]
        lines.append(f"privacy mode: only local engines; refused: {', '.join(refused) or 'none'}")
    failed = [r for r in reports if r.failed]
    if failed:
        names = ", ".join(f"{r.kind} {r.name}" for r in failed)
        lines.append(f"{len(failed)} configured engine(s) cannot run: {names}. See above.")
    else:
        lines.append("All configured engines are installed and load.")
    return "\n".join(lines)


def doctor_settings(settings_factory: Any) -> tuple[Settings, bool, str | None]:
    """The settings to examine, whether privacy mode is on, and why they were refused. Settings
    that privacy mode refuses are still examined (with the refusal reported), so the doctor can
    say which engines are refused instead of only failing."""
    try:
        settings = settings_factory({})
        return settings, settings.privacy.mode, None
    except Exception as exc:  # noqa: BLE001 - the CLI's SettingsError; re-raised unless privacy refused it
        if "privacy mode" not in str(exc):
            raise
        settings = settings_factory({"privacy": {"mode": False}})
        return settings, True, str(exc)


def run(settings: Settings, *, privacy_mode: bool, load_all: bool, as_json: bool, refusal: str | None) -> int:
    reports = asyncio.run(examine(settings, load_all=load_all, privacy_mode=privacy_mode))
    failed = any(r.failed for r in reports) or refusal is not None
    if as_json:
        print(json.dumps({
            "privacy_mode": privacy_mode,
            "settings_refused": refusal,
            "ok": not failed,
            "engines": [asdict(r) | {"status": _status(r)} for r in reports],
        }, indent=2))
    else:
        if refusal:
            print(f"{refusal}\n")
        print(render(reports, privacy_mode=privacy_mode))
    return 1 if failed else 0
