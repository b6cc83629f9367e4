"""Loading a program file (YAML) into the domain's `Program`: the I/O half of "rules are data"."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from processor.domain.program import Program, ProgramError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROGRAM = REPO_ROOT / "deploy" / "programs" / "default.yaml"


@lru_cache(maxsize=8)
def load_program(path: str | Path | None = None) -> Program:
    """Parse and validate a program file; raises ProgramError naming the file and the bad key."""
    path = Path(path) if path else DEFAULT_PROGRAM
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProgramError(f"program file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProgramError(f"program file {path}: not valid YAML: {exc}") from None
    try:
        return Program.from_dict(data or {})
    except ProgramError as exc:
        raise ProgramError(f"{path}: {exc}") from None
