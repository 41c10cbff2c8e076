"""Small file helpers: atomic writes and JSON Lines."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from loraforge.errors import ConfigError

T = TypeVar("T")


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's 0600 would hide results from others)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write all rows at once, atomically."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_text(path, text)


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Append rows and flush them to disk; a torn last line is skipped by `read_jsonl(tolerant=True)`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_user_text(path: Path, fix: str) -> str:
    """A file the user passed, as text; a binary or unreadable file is a ConfigError that says which."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start} cannot be decoded).", fix=fix) from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}).", fix=fix) from None


def iter_jsonl(path: Path, *, tolerant: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row). A bad line raises a ConfigError naming the file and line.

    With `tolerant`, an unparsable last line (a write cut short by a kill) is skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file.", fix="Check the path and try again.")
    lines = read_user_text(path, "Pass a JSONL file: one JSON object per line.").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerant and number == len(lines):
                return
            raise ConfigError(
                f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}).",
                fix="Each line must hold one JSON object.",
            ) from None
        if not isinstance(row, dict):
            raise ConfigError(
                f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.",
                fix="Each line must hold one JSON object.",
            )
        yield number, row


def parse_jsonl(path: Path, parse: Callable[[dict], T | None], problem: str, fix: str) -> list[T]:
    """Every row of a JSONL file through `parse`; a row it refuses (None) is named with its line and keys:
    "{path}, line {n}: a row with keys [...] {problem}", with `fix`."""
    parsed = []
    for number, raw in iter_jsonl(Path(path)):
        row = parse(raw)
        if row is None:
            raise ConfigError(f"{path}, line {number}: a row with keys {sorted(raw)} {problem}", fix=fix)
        parsed.append(row)
    return parsed


def read_jsonl(path: Path, *, tolerant: bool = False) -> list[dict]:
    return [row for _, row in iter_jsonl(path, tolerant=tolerant)]


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file.") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, so not a JSON file.") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a side file such as an adapter's loraforge.json: {} when the file is absent,
    a ConfigError naming the file when it is not JSON or not an object."""
    path = Path(path)
    if not path.is_file():
        return {}
    value = read_json(path)
    if not isinstance(value, dict):
        raise ConfigError(
            f"{path}: expected a JSON object, found {type(value).__name__}.",
            fix=f"Restore {path.name} from the run that wrote it, or delete it.",
        )
    return value


def inside(root: Path, candidate: Path) -> Path:
    """Resolve `candidate` against `root` and refuse it if it escapes `root`."""
    root = Path(root).resolve()
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(
            f"The path {candidate} points outside the run folder {root}.",
            fix="Use a path inside the run folder.",
        )
    return resolved


OWNED_MARKER = ".loraforge-output"


def claim_output_folder(
    path: Path, flag: str, writes: Iterable[str], owned_by: Iterable[str] = (), *, mark: bool = True
) -> Path:
    """Make `path` a folder that a command may write `writes` into, and mark it as loraforge's.

    A folder that loraforge made (it holds the marker, or one of `owned_by`) is reused. A folder of the
    user's is refused when it already holds a file of one of those names: loraforge never overwrites a
    file that it did not write. With `mark=False` the folder is only checked (mark it once the command
    has written its outputs, so that a failed command leaves nothing behind)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; this command writes a folder.", fix="Pass a folder name.")
    if path.is_dir() and not any((path / name).exists() for name in (OWNED_MARKER, *owned_by)):
        taken = sorted(name for name in writes if (path / name).exists())
        if taken:
            raise ConfigError(
                f"{flag} {path} already holds {', '.join(taken)}, which loraforge did not write here.",
                fix="Pass a new or empty folder, or move those files away.",
            )
    return mark_output_folder(path) if mark else path


def mark_output_folder(path: Path) -> Path:
    """Create `path` if needed and mark it as a folder whose outputs loraforge may overwrite."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / OWNED_MARKER).exists():
        atomic_write_text(path / OWNED_MARKER, "Written by loraforge: its commands may overwrite their outputs here.\n")
    return path
