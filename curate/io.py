"""Atomic writes, run records and fingerprints (of tables and files) shared by every stage.

Every output file is written to a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.errors import CurateError

if TYPE_CHECKING:  # pandas is imported where it is used: the face workers never need it
    import pandas as pd

TRACKED_PACKAGES = (
    "numpy",
    "pandas",
    "pyarrow",
    "pillow",
    "torch",
    "torchvision",
    "timm",
    "scipy",
    "typer",
    "rich",
    "matplotlib",
    "safetensors",
    "mediapipe",
    "ai-edge-litert",
)


TMP_SUFFIX = ".tmp"  # atomic_path's temporary files are named .<target name>.<random>.tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched. The
    file gets the permissions of a new file under the process's umask (``mkstemp``
    alone would leave it readable by its owner only). A temporary file left by a killed
    process is removed by :func:`remove_stale_tmp` when the next run claims the folder.
    """
    target = Path(path)
    if os.path.isdir(target) and not os.path.islink(target):
        raise IsADirectoryError(errno.EISDIR, f"{target} is a folder, not a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise disk_error(target, exc) if exc.errno in DISK_ERRNOS else exc from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except OSError as exc:
        # a full or read-only disk while writing; no permission on this file (not on an input read meanwhile)
        if exc.errno in FULL_ERRNOS or (
            exc.errno in DISK_ERRNOS and exc.filename in (None, tmp_name, str(target))
        ):
            raise disk_error(target, exc) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


FULL_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS) if e is not None
)
DISK_ERRNOS = FULL_ERRNOS | {errno.EACCES, errno.EPERM}


def disk_error(path: str | os.PathLike[str], exc: OSError) -> CurateError:
    """The :class:`CurateError` for a write that the disk refused (full, read-only, no
    permission), naming the file and the fix."""
    why = {
        errno.ENOSPC: "the disk is full",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    if getattr(errno, "EDQUOT", None) == exc.errno:
        why = "the disk quota is used up"
    return CurateError(
        f"cannot write {os.fspath(path)}: {why} ({exc.strerror or exc})",
        hint="free space or choose a writable place: another --out (and --cache-dir DIR, or "
        "--cache-dir none for no cache)",
    )


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where it can be, so it is never changed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_TMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}" + re.escape(TMP_SUFFIX))


def remove_stale_tmp(
    folder: str | os.PathLike[str], names: Iterable[str] | None = None
) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` left in ``folder`` when its
    process was killed (``.<name>.<8 random characters>.tmp``; only for the target
    ``names`` when given); returns them. Call it only while holding the folder's lock
    (:mod:`curate.outdir`), so no live writer owns them."""
    removed: list[Path] = []
    d = Path(folder)
    if not d.is_dir():
        return removed
    wanted = None if names is None else set(names)
    for p in d.iterdir():
        m = _TMP_NAME.fullmatch(p.name)
        if m and (wanted is None or m.group("name") in wanted) and (p.is_file() or p.is_symlink()):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# ----------------------------------------------------------------------------- writing safely
#
# The one way curate opens a file for writing: atomic_path (a new temporary file made with
# O_EXCL, renamed over the target: a link at the target is replaced, never followed), and
# for the few files written in place (a lock, an export's copies) open_new_file and
# open_lock_file below, which never follow a link. Folders inside an output are made by
# make_folders, which never goes through a link either.

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class LinkInOutput(OSError):
    """A symbolic link (or a hard-linked file) where curate writes: it is never followed."""


def open_lock_file(path: str | os.PathLike[str]) -> int:
    """A file descriptor of the lock file ``path`` (created when missing), opened for
    reading and writing without following a link. :class:`LinkInOutput` when ``path``
    is a symbolic link, has other hard links, or is not a regular file: writing the lock
    there would write into another file."""
    name = os.fspath(path)
    try:
        fd = os.open(
            name,
            os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0),
            0o666 & ~current_umask(),
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(name):
            raise LinkInOutput(errno.ELOOP, f"{name} is a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        why = (
            "has other hard links"
            if stat.S_ISREG(st.st_mode)
            else f"is {describe_mode(st.st_mode)}"
        )
        raise LinkInOutput(errno.EINVAL, f"{name} {why}")
    return fd


def open_new_file(path: str | os.PathLike[str]) -> Any:
    """``path`` created for binary writing; it must not exist (``FileExistsError``, also
    for a link there, which is never followed)."""
    fd = os.open(
        os.fspath(path),
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
        0o666 & ~current_umask(),
    )
    return os.fdopen(fd, "wb")


def copy_new_file(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Copy the regular file ``src`` to the new file ``dest`` (:func:`open_new_file`),
    with ``src``'s modification time."""
    import shutil

    with open_regular(src) as fin, open_new_file(dest) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        st = os.fstat(fin.fileno())
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def make_folders(root: str | os.PathLike[str], rel: str) -> str:
    """Make the folder ``root/rel`` (``/``-separated, relative) one part at a time, never
    going through a link: a part that is a symbolic link, or not a folder, is a
    :class:`LinkInOutput` naming it. Returns the folder's path."""
    path = os.fspath(root)
    for part in (p for p in rel.split("/") if p and p != "."):
        if part == "..":
            raise LinkInOutput(errno.EINVAL, f"{rel} leaves {root}")
        path = os.path.join(path, part)
        try:
            os.mkdir(path)
            continue
        except FileExistsError:
            pass
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise LinkInOutput(errno.ELOOP, f"{path} is a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            raise LinkInOutput(
                errno.ENOTDIR, f"{path} is {describe_mode(st.st_mode)}, not a folder"
            )
    return path


# ----------------------------------------------------------------------------- reading files


class NotARegularFile(OSError):
    """A path that is a FIFO, a device, a socket or a symbolic-link loop: curate reads
    only regular files, so such a path can never block a read or stream without end."""


class FileTooLarge(OSError):
    """A file larger than the reader's byte limit."""

    def __init__(self, path: str | os.PathLike[str], size: int, limit: int) -> None:
        super().__init__(
            errno.EFBIG, f"{os.fspath(path)} has {size:,} bytes, more than the limit of {limit:,}"
        )
        self.size, self.limit = size, limit


def describe_mode(mode: int) -> str:
    """What a ``stat`` mode is, in words (``a FIFO (named pipe)``, ``a character device``, ...)."""
    for test, words in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> Any:
    """Open a regular file for binary reading, never blocking.

    The file is checked before and after opening (without blocking, so a FIFO cannot
    hang the open), so a path swapped for a FIFO in between is refused too. Raises
    ``FileNotFoundError``, ``IsADirectoryError``, :class:`NotARegularFile` (FIFO,
    device, socket, symbolic-link loop) or another ``OSError``.
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile(errno.ELOOP, f"{name} is a symbolic link loop") from None
        raise
    _require_regular(name, st.st_mode)
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        _require_regular(name, st.st_mode)
        if st.st_dev in _kernel_file_systems():
            raise NotARegularFile(
                errno.EINVAL, f"{name} is a file of the kernel (/proc, /sys), not data"
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_KERNEL_DEVS: set[int] | None = None


def _kernel_file_systems() -> set[int]:
    """The devices of ``/proc`` and ``/sys``: their "regular" files (``/proc/self/pagemap``,
    ``/proc/kcore``) report a size of 0 or a huge one and are never data to read."""
    global _KERNEL_DEVS
    if _KERNEL_DEVS is None:
        devs = set()
        for root in ("/proc", "/sys"):
            with contextlib.suppress(OSError):
                devs.add(os.stat(root).st_dev)
        _KERNEL_DEVS = devs
    return _KERNEL_DEVS


def _require_regular(name: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, f"{name} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise NotARegularFile(errno.EINVAL, f"{name} is {describe_mode(mode)}, not a regular file")


def read_capped(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file (:func:`open_regular`), at most ``max_bytes`` of them;
    :class:`FileTooLarge` for a larger file (checked before reading, and while reading
    for a file that grows)."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise FileTooLarge(path, size, max_bytes)
        # read(n) allocates n bytes before reading: ask for what the file holds, and more
        # only when it grew (a million 90-byte images, each under a 656 MB cap)
        data = f.read(size + 1)
        if len(data) > size:
            data += f.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise FileTooLarge(path, len(data), max_bytes)
    return data


MAX_JSON_DEPTH = 64  # nesting of arrays and objects in any JSON file curate reads


class JSONTooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH`."""


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside
    strings do not count), in linear time without recursion."""
    import numpy as np

    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if not any(b in raw for b in (b"[", b"{")):
        return 0
    b = np.frombuffer(raw, dtype=np.uint8)
    quote = b == ord('"')
    if quote.any():  # drop quotes that a backslash escapes (an odd run of backslashes before them)
        backslash = (b == ord("\\")).astype(np.int64)
        run = np.zeros(len(b), np.int64)  # backslashes ending at each position
        idx = np.flatnonzero(backslash)
        if len(idx):
            starts = np.r_[True, np.diff(idx) > 1]
            group_start = np.maximum.accumulate(np.where(starts, idx, 0))
            run[idx] = idx - group_start + 1
        before = np.r_[0, run[:-1]]
        quote &= (before % 2) == 0
    in_string = (np.cumsum(quote) % 2).astype(bool) & ~quote
    step = np.zeros(len(b), np.int64)
    step[(b == ord("[")) | (b == ord("{"))] = 1
    step[(b == ord("]")) | (b == ord("}"))] = -1
    step[in_string] = 0
    return int(np.cumsum(step).max(initial=0))


def loads_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` bounded in nesting (:class:`JSONTooDeep`), so no JSON text can
    exhaust the stack."""
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONTooDeep(f"nested {depth} levels deep, more than the limit of {max_depth}")
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise JSONTooDeep(f"nested more than {max_depth} levels deep") from None


def read_json_file(
    path: str | os.PathLike[str],
    *,
    what: str,
    hint: str,
    max_bytes: int = 64 * 2**20,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """A small JSON file (a config, a run record) read safely: a missing, non-regular,
    oversized (``max_bytes``), too deeply nested (``max_depth``), non-UTF-8 or malformed
    file is a :class:`CurateError` naming it. Every JSON file curate reads comes here."""
    p = Path(path)
    try:
        text = read_capped(p, max_bytes).decode("utf-8")
        return loads_json(text, max_depth=max_depth)
    except FileNotFoundError as exc:
        raise CurateError(f"{what} not found: {p}", hint=hint) from exc
    except (
        OSError,
        ValueError,
    ) as exc:  # JSONDecodeError, UnicodeDecodeError, JSONTooDeep are ValueErrors
        raise CurateError(f"cannot read {what} {p}: {exc}", hint=hint) from exc


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` as Parquet, atomically, without the pandas index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_parquet(
    path: str | os.PathLike[str], *, what: str = "table", columns: list[str] | None = None
) -> pd.DataFrame:
    """Read a Parquet file (only ``columns`` when given), turning a missing, non-regular or
    broken file into a :class:`CurateError`."""
    import pandas as pd

    return _parquet(path, what, lambda p: pd.read_parquet(p, columns=columns))


def read_parquet_arrow(
    path: str | os.PathLike[str], *, what: str = "table", columns: list[str] | None = None
) -> Any:
    """:func:`read_parquet` as a ``pyarrow.Table`` (columns stay Arrow arrays)."""
    import pyarrow.parquet as pq

    return _parquet(path, what, lambda p: pq.read_table(p, columns=columns))


def read_parquet_schema(path: str | os.PathLike[str], *, what: str = "table") -> Any:
    """The ``pyarrow.Schema`` of a Parquet file (its column names: ``.names``), read
    without the data."""
    import pyarrow.parquet as pq

    return _parquet(path, what, pq.read_schema)


def _parquet(path: str | os.PathLike[str], what: str, read: Any) -> Any:
    p = Path(path)
    if not p.exists():
        raise CurateError(
            f"{what} not found: {p}", hint="check the path, or run the stage that writes it"
        )
    try:
        if not p.is_dir():  # a folder is a partitioned dataset; a FIFO or a device would block
            open_regular(p).close()
    except OSError as exc:
        raise CurateError(
            f"cannot read {what} {p}: {exc.strerror or exc}", hint="pass a regular Parquet file"
        ) from exc
    try:
        return read(p)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise CurateError(
            f"cannot read {what} {p}: {exc}", hint="re-run the stage that writes it"
        ) from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def versions() -> dict[str, str]:
    """Versions of curate, Python and the libraries that shape results."""
    from curate import __version__

    out = {"curate": __version__, "python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        v = _version(name)
        if v != "not installed":
            out[name] = v
    return out


def _version(name: str) -> str:
    # imported here: importlib.metadata (and the email package it loads) costs every face
    # worker, which reads files through this module, 20 ms of CPU at start-up
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a regular file's bytes, read in 1 MiB blocks; ``OSError`` when
    unreadable or not a regular file (:func:`open_regular`)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A sha256 over the given columns of a table: same rows, same fingerprint."""
    import pandas as pd

    cols = columns or list(df.columns)
    h = hashlib.sha256()
    h.update(json.dumps(cols).encode())
    hashed = pd.util.hash_pandas_object(df[cols].astype("string"), index=False)
    h.update(hashed.to_numpy().tobytes())
    return h.hexdigest()


def run_record(
    command: str,
    params: Mapping[str, Any],
    *,
    inputs: Mapping[str, Any],
    counts: Mapping[str, Any],
    started: float,
) -> dict[str, Any]:
    """The ``run.json`` every stage writes next to its outputs."""
    return {
        "command": command,
        "argv": sys.argv,
        "params": dict(params),
        "inputs": dict(inputs),
        "counts": dict(counts),
        "versions": versions(),
        "platform": platform.platform(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
    }
