"""The building blocks: tokens, one-time codes, the kept secret, passwords."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from voice_server.auth.onetime import OneTimeCodes
from voice_server.auth.passwords import WeakPassword, hash_password, verify_password
from voice_server.auth.redact import redact
from voice_server.auth.secret import SECRET_FILE, load_or_create_secret
from voice_server.auth.tokens import InvalidToken, Role, TokenIssuer

SECRET = "x" * 40


def test_a_token_carries_role_opaque_subject_classroom_and_its_lifetime():
    issuer = TokenIssuer(SECRET, ttl_s=900)
    now = datetime.now(UTC).replace(microsecond=0)
    token = issuer.mint(Role.TEACHER, "tch_abc", classroom="cls_1", now=now)
    claims = issuer.verify(token)
    assert (claims.subject, claims.role, claims.classroom) == ("tch_abc", Role.TEACHER, "cls_1")
    assert claims.expires_at == now + timedelta(seconds=900)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert {"sub", "role", "classroom", "iat", "exp", "jti", "aud"} == set(raw)
    assert issuer.verify(issuer.mint(Role.TEACHER, "tch_abc")).token_id != claims.token_id


def test_expired_and_foreign_tokens_are_refused_without_echoing_them():
    issuer = TokenIssuer(SECRET, ttl_s=60)
    expired = issuer.mint(Role.STUDENT, "stu_1", ttl_s=-1)
    with pytest.raises(InvalidToken, match="expired") as caught:
        issuer.verify(expired)
    assert expired not in str(caught.value)
    with pytest.raises(InvalidToken):
        issuer.verify(TokenIssuer("y" * 40, ttl_s=60).mint(Role.ADMIN, "adm_1"))


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="32"):
        TokenIssuer("short", ttl_s=60)


def test_a_one_time_code_works_once_and_only_before_it_expires():
    now = [0.0]
    codes: OneTimeCodes[str] = OneTimeCodes(60, clock=lambda: now[0])
    code = codes.issue("student")
    assert codes.redeem(code) == "student"
    assert codes.redeem(code) is None  # used
    late = codes.issue("student")
    now[0] = 61
    assert codes.redeem(late) is None  # expired
    assert codes.redeem("never-issued") is None


def test_outstanding_codes_are_bounded_and_expired_ones_forgotten():
    now = [0.0]
    codes: OneTimeCodes[int] = OneTimeCodes(10, max_outstanding=2, clock=lambda: now[0])
    codes.issue(1)
    codes.issue(2)
    with pytest.raises(OverflowError):
        codes.issue(3)
    now[0] = 11
    assert codes.redeem(codes.issue(4)) == 4


def test_the_secret_is_made_once_with_mode_0600_and_kept(tmp_path):
    first = load_or_create_secret(tmp_path / "data")
    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_or_create_secret(tmp_path / "data") == first  # a restart signs with the same secret


def test_a_loosened_secret_file_is_tightened(tmp_path):
    load_or_create_secret(tmp_path)
    (tmp_path / SECRET_FILE).chmod(0o644)
    load_or_create_secret(tmp_path)
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600


def test_passwords_are_argon2_hashes_and_short_ones_refused():
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$") and "correct" not in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "wrong horse battery")
    assert not verify_password(None, "correct horse battery")  # unknown user
    with pytest.raises(WeakPassword):
        hash_password("short")


def test_credentials_in_a_logged_url_are_redacted():
    line = '127.0.0.1:5 - "WebSocket /v1/ws?ticket=abc123&x=1" [accepted]'
    assert redact(line) == '127.0.0.1:5 - "WebSocket /v1/ws?ticket=[redacted]&x=1" [accepted]'
    assert "secret" not in redact("/v1/ws?token=secret")
    assert redact("closed with code=1008") == "closed with code=1008"  # not a query parameter
