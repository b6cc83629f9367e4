"""Who may sign in to the console: a YAML users file with salted scrypt hashes.

A file rather than a database because the console has a handful of analysts and no other state;
it is read at every sign-in, so `incentives console add-user` takes effect without a restart.
scrypt (`hashlib`, no extra dependency) is memory-hard, so a stolen file is expensive to attack;
its parameters are stored per user, so they can be raised later without invalidating old hashes.

File layout::

    users:
      alice:
        scrypt: {n: 16384, r: 8, p: 1, salt: <hex>, hash: <hex>}
        created_at: '2026-12-01T10:00:00Z'
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import yaml

#: scrypt cost: 16 MiB and ~50 ms per check on these machines (OWASP's minimum is n=2**17 with
#: r=8 for new systems; this is a loopback tool for a few analysts, and the cost is stored per hash)
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_CHARS = 10
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class UsersError(ValueError):
    """The users file or a user entry cannot be used."""


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=256 * n * r * p + 2**20)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                  salt: bytes | None = None) -> dict[str, Any]:
    """The stored form of ``password``: scrypt parameters, a fresh random salt and the hash."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    return {"n": n, "r": r, "p": p, "salt": salt.hex(), "hash": digest.hex()}


#: checked when the name is unknown, so a wrong name costs as long as a wrong password
_DUMMY = hash_password("not a password", salt=b"\0" * SALT_BYTES)


def _parse(record: Any) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        n, r, p = int(record["n"]), int(record["r"]), int(record["p"])
        salt, expected = bytes.fromhex(record["salt"]), bytes.fromhex(record["hash"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16 and len(expected) >= 16):
        return None
    return n, r, p, salt, expected


def verify_password(password: str, record: dict[str, Any] | None) -> bool:
    """True if ``password`` matches the stored ``record`` (compared in constant time). A missing
    or malformed record is checked against a dummy hash, and fails."""
    parsed = _parse(record)
    n, r, p, salt, expected = parsed or _parse(_DUMMY)  # type: ignore[misc]
    actual = _scrypt(password, salt, n, r, p, len(expected))
    return hmac.compare_digest(actual, expected) and parsed is not None


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise UsersError(f"user name {name!r}: 1-64 letters, digits or . _ @ -, starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UsersError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    return password


def load_users(path: Path) -> dict[str, dict[str, Any]]:
    """name -> entry; an absent file is no users (nobody can sign in)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as e:
        raise UsersError(f"users file {path}: {e}") from None
    users = (data or {}).get("users") if isinstance(data, dict) or data is None else None
    if users is None:
        return {}
    if not isinstance(users, dict):
        raise UsersError(f"users file {path}: 'users' must be a mapping of name to entry")
    return {str(k): v for k, v in users.items() if isinstance(v, dict)}


def authenticate(path: Path, name: str, password: str) -> bool:
    """True if ``name`` is in the users file with that password."""
    entry = load_users(path).get(name)
    return verify_password(password, entry.get("scrypt") if entry else None)


def save_users(path: Path, users: dict[str, dict[str, Any]]) -> None:
    """Write the file atomically, readable by its owner only (it holds password hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# Analysts of the incentives console (incentives console add-user NAME). Holds password\n"
            "# hashes: keep it out of version control and readable by the console's user only.\n"
            + yaml.safe_dump({"users": users}, sort_keys=True))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)


def add_user(path: Path, name: str, password: str, *, replace: bool = False) -> None:
    """Add ``name`` (or set a new password with ``replace``); raises :class:`UsersError`."""
    check_name(name)
    check_password(password)
    users = load_users(path)
    if name in users and not replace:
        raise UsersError(f"user {name!r} already exists in {path} (use --replace to set a new password)")
    users[name] = {"scrypt": hash_password(password),
                   "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_users(path, users)


def generate_password() -> str:
    """A random password for a generated user (16 URL-safe characters, ~96 bits)."""
    return secrets.token_urlsafe(12)
