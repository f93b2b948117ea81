"""The shared content-addressed cache of embeddings and face analyses (``docs/cache.md``).

One folder serves every command and every output folder, so a second ``curate screen``
of the same images with other thresholds reuses the first one's work:

``<root>/embeddings/<key>/shard-*.npz``
    backbone embeddings, ``key`` from :func:`namespace` over everything that changes a
    vector (:func:`curate.embed.cache_key`);
``<root>/faces/<key>/shard-*.parquet``
    face analyses (:func:`curate.faces.analyze.cache_key`).

Inside a namespace an entry is addressed by the sha256 of the image file's bytes,
computed afresh by :func:`content_hashes` before any entry is read or written (a file
changed since ``build-tuples`` hashed it is an error, never a stale hit). Shards are
written atomically by a :class:`ShardWriter` as a run goes (every ``max_items`` entries
or ``max_seconds``, and when the run stops, Ctrl-C included), so a killed run loses at
most a few seconds of work. Shard names are hashes of their keys, so concurrent runs
never overwrite each other's shards.

Every shard is checked before any entry of it is used: its name ends with the first 16
hex digits of the sha256 of its bytes (``shard-<keys>-<bytes>``; shards of earlier
versions have none), and its entries are validated by the reader (an embedding's shape,
dtype and finiteness, a face row's columns and ranges). A damaged shard is a cache miss
with a :class:`DamagedShardWarning`: it is deleted, its entries are recomputed, never used.

The root is :func:`resolve_cache_dir`: ``--cache-dir``, else ``$CURATE_CACHE``, else
``$XDG_CACHE_HOME/curate``, else ``~/.cache/curate``; ``none`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from curate.errors import CurateError, CurateWarning
from curate.io import DISK_ERRNOS, TMP_SUFFIX, current_umask, file_sha256, write_json

ENV_VAR = "CURATE_CACHE"
OFF = "none"  # --cache-dir none / CURATE_CACHE=none: no cache
SHARD_ITEMS = 2048  # a shard is written at least every this many entries ...
SHARD_SECONDS = 10.0  # ... and at least this often while entries arrive
COMPACT_AT = 64  # more shards than this in a namespace are merged into one

V = TypeVar("V")


def default_cache_dir() -> Path:
    """``$CURATE_CACHE`` (not ``none``), else ``$XDG_CACHE_HOME/curate``, else ``~/.cache/curate``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env and env.lower() != OFF:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "curate"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """The cache root to use: ``cache_dir`` when given, else :func:`default_cache_dir`;
    None when caching is off (``cache_dir`` or ``$CURATE_CACHE`` is ``none``).

    The folder is created here; one that cannot be created is a :class:`CurateError`.
    """
    if cache_dir is None:
        if os.environ.get(ENV_VAR, "").strip().lower() == OFF:
            return None
        root = default_cache_dir()
        where = f"the default cache folder {root}"
    elif str(cache_dir).strip().lower() == OFF:
        return None
    else:
        root = Path(cache_dir).expanduser()
        where = f"--cache-dir {root}"
    real = Path(os.path.realpath(root))
    if real == Path(real.anchor):
        raise CurateError(
            f"{where} is the root folder {real.anchor}; curate never writes its cache there",
            hint=f"pass --cache-dir DIR with a folder of its own (default: {default_cache_dir()}), "
            "or --cache-dir none",
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CurateError(
            f"cannot create {where}: {exc.strerror or exc}",
            hint=f"pass --cache-dir DIR (or set {ENV_VAR}) to a writable folder, "
            "or --cache-dir none to run without a cache",
        ) from exc
    if not root.is_dir():
        raise CurateError(f"{where} is not a folder", hint="pass --cache-dir DIR, a folder")
    return root.resolve()


def namespace(kind: str, settings: Mapping[str, Any]) -> str:
    """The key of a namespace: 20 hex digits of a sha256 over ``kind`` and ``settings``
    (JSON, sorted keys). Every setting that changes an entry must be in ``settings``."""
    blob = json.dumps({"kind": kind, **settings}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def namespace_dir(root: Path, kind: str, key: str, settings: Mapping[str, Any]) -> Path | None:
    """``root/kind/key``, created, with ``meta.json`` recording ``settings`` (for people);
    None, with a :class:`CacheOffWarning`, when the disk refuses (full, read-only, no
    permission): the run goes on without the cache."""
    folder = root / kind / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / "meta.json"
        if not meta.exists():
            write_json({"kind": kind, "key": key, "settings": dict(settings)}, meta)
    except (OSError, CurateError) as exc:
        if isinstance(exc, OSError) and exc.errno not in DISK_ERRNOS:
            raise
        _cache_off(folder, exc)
        return None
    return folder


class CacheOffWarning(CurateWarning):
    """The cache folder could not be written (full, read-only, no permission): the run
    goes on without caching."""


def _cache_off(where: Path, exc: BaseException) -> None:
    why = (
        exc.message
        if isinstance(exc, CurateError)
        else (getattr(exc, "strerror", None) or str(exc))
    )
    warnings.warn(
        f"cannot write the cache {where} ({why}): going on without caching; free space or pass "
        "--cache-dir DIR (a writable folder) or --cache-dir none",
        CacheOffWarning,
        stacklevel=3,
    )


# ----------------------------------------------------------------------------- content hashes
_HASHES: dict[
    tuple[str, int, int, int, int], str
] = {}  # (path, dev, inode, size, mtime_ns) -> sha256


def content_hashes(
    paths: Sequence[str | os.PathLike[str]],
    recorded: Sequence[str | None] | None = None,
    *,
    workers: int = 8,
) -> list[str | None]:
    """The sha256 of every file's bytes now (None for a file that cannot be read).

    ``recorded`` are the hashes a table holds (``images.parquet``'s ``sha256``); a file
    whose bytes no longer match is a :class:`CurateError` naming it, so a cache is never
    read or written under a stale hash. Hashes are remembered for the life of the
    process while a file's size and modification time stay the same.
    """
    items = [str(p) for p in paths]
    if recorded is not None and len(recorded) != len(items):
        raise CurateError(
            f"{len(recorded)} sha256 values for {len(items)} paths",
            hint="pass one sha256 per path, or none",
        )
    if len(items) > 64 and workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            now = list(pool.map(_hash_now, items, chunksize=64))
    else:
        now = [_hash_now(p) for p in items]
    if recorded is not None:
        changed = [
            (p, r, h)
            for p, r, h in zip(items, recorded, now, strict=True)
            if isinstance(r, str) and r and h is not None and h != r
        ]
        if changed:
            p, r, h = changed[0]
            raise CurateError(
                f"{len(changed):,} image(s) changed since their sha256 was recorded, e.g. {p} "
                f"(recorded {r[:12]}..., now {h[:12]}...)",
                hint="re-run `curate build-tuples` on the source so images.parquet matches the "
                "files (cached results are keyed by the files' bytes)",
            )
    return now


def _hash_now(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    memo = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _HASHES.get(memo)
    if hit is None:
        try:
            hit = file_sha256(path)
        except OSError:
            return None
        _HASHES[memo] = hit
    return hit


# ----------------------------------------------------------------------------- shards
ReadShard = Callable[[Path], dict[str, V]]
CHECK_DIGITS = 16  # hex digits of the sha256 of a shard's bytes, at the end of its name
_SHARD_NAME = re.compile(
    rf"shard-(?P<keys>[0-9a-f]{{20}})(?:-(?P<check>[0-9a-f]{{{CHECK_DIGITS}}}))?"
)


class DamagedShardWarning(CurateWarning):
    """A cache shard failed its check (bytes or entries): it was deleted and its entries
    are recomputed."""


class DamagedShard(ValueError):
    """Raised by a shard reader for a shard whose entries are not what it writes."""


WriteShard = Callable[[Path, list[str], list[V]], None]


class ShardWriter(Generic[V]):
    """Buffers ``(key, value)`` entries and writes them as one shard file each time
    ``max_items`` entries are pending or ``max_seconds`` passed since the last write,
    and on :meth:`close` (a ``with`` block closes it, also when it ends by an error or
    Ctrl-C). ``write(path, keys, values)`` writes one shard; it is given a temporary
    path that is renamed into place, so a shard is never seen half-written.
    """

    def __init__(
        self,
        folder: Path,
        suffix: str,
        write: WriteShard,
        *,
        max_items: int = SHARD_ITEMS,
        max_seconds: float = SHARD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder, self.suffix, self._write = folder, suffix, write
        self.max_items, self.max_seconds, self._clock = max_items, max_seconds, clock
        self._keys: list[str] = []
        self._values: list[V] = []
        self._last = clock()
        self.written: list[Path] = []
        self.off = False  # set when the disk refused a shard: nothing more is written

    def add(self, keys: Iterable[str], values: Iterable[V]) -> None:
        """Queue entries; writes a shard when enough are pending or enough time passed."""
        self._keys.extend(keys)
        self._values.extend(values)
        if len(self._keys) >= self.max_items or self._clock() - self._last >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the pending entries (if any) as one shard."""
        self._last = self._clock()
        if not self._keys:
            return
        keys, values = self._keys, self._values
        self._keys, self._values = [], []
        if self.off:
            return
        try:
            self.written.append(self._write_shard(keys, values))
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            self.off = True  # a full or read-only cache: the run goes on without it
            _cache_off(self.folder, exc)

    def _write_shard(self, keys: list[str], values: list[V]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"shard-{_digest(keys)}"
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{stem}{self.suffix}.", suffix=TMP_SUFFIX, dir=self.folder
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self._write(tmp, keys, values)
            path = self.folder / f"{stem}-{file_sha256(tmp)[:CHECK_DIGITS]}{self.suffix}"
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(
                tmp, path
            )  # the name carries the checksum, so a shard is never seen half-written
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter[V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_shards(
    folder: Path, suffix: str, read: ReadShard[V], wanted: set[str] | None = None
) -> dict[str, V]:
    """Every entry of the shards in ``folder`` (only the ``wanted`` keys when given).

    A shard whose bytes do not match the checksum in its name, that cannot be read, or
    whose reader finds entries it would not have written (:class:`DamagedShard`) is
    deleted with a :class:`DamagedShardWarning`: its entries are recomputed, never used.
    """
    out: dict[str, V] = {}
    if not folder.is_dir():
        return out
    for f in sorted(folder.glob(f"shard-*{suffix}")):
        why = shard_damage(f, suffix)
        entries: dict[str, V] = {}
        if why is None:
            try:
                entries = read(f)
            except Exception as exc:  # npz and Parquet readers raise many types for a damaged file
                why = f"{type(exc).__name__}: {str(exc)[:200]}"
        if why is not None:
            warnings.warn(
                f"damaged cache shard {f} ({why}): deleted, its entries are recomputed",
                DamagedShardWarning,
                stacklevel=2,
            )
            f.unlink(missing_ok=True)
            continue
        if wanted is None:
            out.update(entries)
        else:
            out.update((k, v) for k, v in entries.items() if k in wanted)
    return out


def shard_damage(path: Path, suffix: str) -> str | None:
    """Why the bytes of the shard ``path`` cannot be trusted (a name curate never writes,
    not a regular file, a checksum that does not match), or None."""
    m = _SHARD_NAME.fullmatch(path.name[: len(path.name) - len(suffix)])
    if m is None:
        return "not a shard name curate writes"
    if path.is_symlink() or not path.is_file():
        return "not a regular file"
    if m.group("check") is None:
        return None  # written by an earlier curate: the reader's validation alone
    try:
        actual = file_sha256(path)[:CHECK_DIGITS]
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None if actual == m.group("check") else f"checksum {actual} does not match its name"


def compact(
    folder: Path, suffix: str, read: ReadShard[V], write: WriteShard[V], *, at: int = COMPACT_AT
) -> bool:
    """Merge the shards of ``folder`` into one when there are more than ``at``; True when
    it did. The merged shard is written before the old ones are removed, so a reader at
    any moment sees every entry (some twice)."""
    shards = sorted(folder.glob(f"shard-*{suffix}"))
    if len(shards) <= at:
        return False
    entries = read_shards(folder, suffix, read)
    if not entries:
        return False
    writer: ShardWriter[V] = ShardWriter(
        folder, suffix, write, max_items=len(entries) + 1, max_seconds=float("inf")
    )
    writer.add(entries.keys(), entries.values())
    writer.close()
    if writer.off or not writer.written:  # the merged shard was not written: keep the old ones
        return False
    for f in shards:
        if f not in writer.written:
            f.unlink(missing_ok=True)
    return True


def _digest(keys: list[str]) -> str:
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode())
        h.update(b"\n")
    return h.hexdigest()[:20]
