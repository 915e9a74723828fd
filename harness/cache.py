"""The one on-disk cache of the harness: frozen features, the probe's fitted heads, the outputs runs
export for others (a teacher's logits), the domain gap, decoded images — anything recomputable.

An entry is a ``torch.save`` payload at ``<cache>/<kind>/<key>.pt`` written atomically with a
SHA-256 sidecar beside it; a read verifies the checksum and loads with ``weights_only=True``.
An entry that is missing, torn or tampered with reads as absent and is recomputed, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.digest import digest
from harness.records import atomic_write_bytes

if TYPE_CHECKING:
    pass


def default_cache_dir() -> Path:
    """Where the cache lives unless ``--cache-dir`` says: ``$HARNESS_CACHE``, else
    ``$XDG_CACHE_HOME/harness``, else ``~/.cache/harness``. Outside the results directory, so
    results can be shared (copied, committed, uploaded) without megabytes of features."""
    explicit = os.environ.get("HARNESS_CACHE")
    return Path(explicit).expanduser() if explicit else user_cache_home() / "harness"


def user_cache_home() -> Path:
    """The user's cache directory by the XDG convention: ``$XDG_CACHE_HOME``, else ``~/.cache``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    # the XDG spec: a relative value is invalid and is ignored
    return Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".cache"


SALT_FILE = "hostname-salt"


def user_salt() -> bytes | None:
    """This user's random salt for the hostname hash records carry (made once, 32 bytes, readable
    by the user only, in :func:`default_cache_dir` — never in a ``--cache-dir`` a team may share);
    None when it can be neither read nor made."""
    import secrets

    path = default_cache_dir() / SALT_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SALT_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic, and refused when another process made it first: both then read one salt
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        return None


def hostname_hash(hostname: str) -> str | None:
    """The hostname as records store it by default: ``sha256:`` and 16 hex digits of the hash of
    :func:`user_salt` and the name (the same machine of the same user always hashes alike, and a
    reader of the records cannot test guessed names against it); None without a salt."""
    salt = user_salt()
    return None if salt is None else "sha256:" + hashlib.sha256(salt + hostname.encode()).hexdigest()[:16]


def key(parts: Any, version: int = 1) -> str:
    """A stable key for ``parts`` (JSON-able; dict order does not matter)."""
    return digest({"parts": parts, "version": version}, 20)


def entry(cache_dir: str | Path | None, kind: str, name: str) -> Path | None:
    """The path of entry ``name`` of ``kind`` (None when there is no cache directory)."""
    return Path(cache_dir) / kind / f"{name}.pt" if cache_dir else None


def save(path: Path | None, payload: Any) -> None:
    import torch

    if path is None:
        return
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())


def stamp(path: Path | None) -> tuple[tuple[int, int, int] | None, ...] | None:
    """The entry's and its checksum's (inode, modification time in ns, size), None for a file that is
    absent: whether the entry changed since (a writer renames the entry, then its checksum)."""
    if path is None:
        return None

    def one(p: Path) -> tuple[int, int, int] | None:
        try:
            st = p.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    return one(path), one(path.with_suffix(".sha256"))


@contextlib.contextmanager
def computing(path: Path | None) -> Iterator[None]:
    """Held while this process computes the entry at ``path``: another process or thread asking for
    the same entry (two seeds of one probe in a worker pool) waits, then reads what this one wrote,
    instead of computing it beside it. An advisory ``flock`` on a ``.lock`` file beside the entry,
    released when the holder leaves or dies; where there is no ``flock`` (Windows, some network
    filesystems) it does nothing and both compute, as before."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # read-only is enough to flock, and works on a lock file another user of a shared cache made
        fd = os.open(path.with_suffix(".lock"), os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:  # cannot make or open the lock file: compute unlocked, as before
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = True
        except OSError:  # the filesystem does not lock: compute unlocked
            held = False
        try:
            yield
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def load_or_compute(path: Path | None, compute: Callable[[], Any],
                    valid: Callable[[Any], bool] | None = None) -> tuple[Any, bool]:
    """The verified payload at ``path`` and True; else ``compute()``, saved there, and False. One
    process computes an entry at a time (:func:`computing`): a worker that asks while another
    computes waits, then reads what the other wrote, instead of computing it beside it. ``valid``
    rejects a readable payload that does not fit (recomputed, as a damaged one is)."""
    def usable(x: Any) -> bool:
        return x is not None and (valid is None or valid(x))

    seen = stamp(path)
    stored = load(path)
    if usable(stored):
        return stored, True
    with computing(path):
        if stamp(path) != seen:  # written while this one waited (an unchanged entry is not re-read)
            stored = load(path)
            if usable(stored):
                return stored, True
        payload = compute()
        save(path, payload)
        return payload, False


REJECTED: Counter[str] = Counter()  # entries found damaged in this process, by kind (the run records its share)


def load(path: Path | None) -> Any | None:
    """The verified payload at ``path``, or None: absent, or damaged (torn, flipped, its checksum
    missing or wrong, unreadable) — a damaged entry is counted in :data:`REJECTED` under its kind."""
    import torch

    if path is None:
        return None
    sidecar = path.with_suffix(".sha256")
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        expected = sidecar.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        expected = None  # an entry without its checksum: written by a killed writer, or by hand
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        REJECTED[path.parent.name.lstrip(".")] += 1
        return None  # torn or tampered: recompute
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a checksummed file torch cannot read is as damaged as a torn one
        REJECTED[path.parent.name.lstrip(".")] += 1
        return None
