"""Output folders: one policy for every command that writes one, a lock, and a completion marker.

``build-tuples``, ``screen``, ``export`` and ``finetune`` write a folder (``--out``);
``faces`` writes a file (``--out-file faces.parquet``, its record ``faces.run.json`` beside it).
Each claims its output with :func:`claim_folder` or :func:`claim_file`, which

1. refuses ``/``, an existing file (for a folder) or folder (for a file), an input of
   the command (its source, its build folder, its weights run), a non-empty folder that
   holds no run of curate, and a run of another command;
2. takes an exclusive lock (``.curate.lock`` in the folder; for a file output
   ``.<name>.lock`` beside it), so a second command writing the same output stops with
   an error instead of replacing the first one's results; the lock is the kernel's
   (``flock``), so a killed process never leaves a stale one;
3. compares the settings with those of the previous run of the same command in that
   output: the same settings re-run (or resume) without asking; other settings need
   ``force`` (``--force``), and the run says what it replaced (:attr:`Claim.note`);
4. removes what a previous run left half-written (temporary files of killed writes);
5. writes the run record (``run.json``, ``export.json`` or ``<name>.run.json``) with
   ``"state": "running"`` FIRST, then deletes the previous run's outputs (only files
   that run wrote: user files in the folder are never touched), and the command writes
   the complete record LAST (:meth:`Claim.finish`, ``"state": "complete"``).

So a folder whose record says ``running`` (killed), ``failed`` or ``interrupted`` is an
incomplete set of files: :func:`require_complete` refuses it where a command reads one
(``report``, ``export``, ``finetune``, ``screen``, ``faces``, ``evaluate``). Records
without a ``state`` come from earlier versions of curate and are read as complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import CurateError
from curate.io import (
    DISK_ERRNOS,
    TMP_SUFFIX,
    LinkInOutput,
    disk_error,
    loads_json,
    open_lock_file,
    open_regular,
    read_json_file,
    remove_stale_tmp,
    write_json,
)
from curate.sources import absolute

if os.name == "posix":  # the lock is POSIX flock; elsewhere runs are not locked
    import fcntl
else:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".curate.lock"
RUNNING, COMPLETE, FAILED, INTERRUPTED = "running", "complete", "failed", "interrupted"
# the record each command writes last; a folder's previous command is read from it
RECORD_FILES = {
    "build-tuples": "run.json",
    "screen": "run.json",
    "finetune": "run.json",
    "export": "export.json",
}


@dataclass
class Claim:
    """An output claimed by one run (see the module doc)."""

    path: Path  # the output folder, or the output file
    command: str
    record_path: Path
    settings: dict[str, Any]
    previous_state: str | None = None  # the previous run's state, None when there was none
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)
    _lock: Any = None

    @property
    def note(self) -> str | None:
        """What this run replaced, in words (None for a new or empty output)."""
        if self.previous_state is None:
            return None
        what = f"the previous {self.command} run in {self.path}"
        if self.previous_state not in (COMPLETE, "legacy"):
            what = f"the incomplete ({self.previous_state}) {self.command} run in {self.path}"
        how = (
            "settings changed: "
            + "; ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in self.changes.items())
            if self.changes
            else "same settings"
        )
        files = ", ".join(self.replaced[:8]) + (
            f" and {len(self.replaced) - 8:,} more" if len(self.replaced) > 8 else ""
        )
        return f"replaced {what} ({how})" + (f": {files}" if files else "")

    def will_write(self, files: Sequence[str]) -> None:
        """Record the files (relative paths) this run is about to write, before writing
        them, so a run killed midway has them deleted by the next one (``export``)."""
        rec = _record(self.record_path)
        write_json({**rec, "files": list(files)}, self.record_path)

    def finish(self, record: Mapping[str, Any], **extra: Any) -> Path:
        """Write the complete run record, the last file of the run."""
        full = {**record, "state": COMPLETE, "settings": self.settings, **extra}
        return write_json(full, self.record_path)


# ----------------------------------------------------------------------------- claiming


@contextlib.contextmanager
def claim_folder(
    out: str | os.PathLike[str],
    command: str,
    *,
    settings: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    force: bool = False,
    owned: Iterable[str] = (),
    owned_dirs: Iterable[str] = (),
    scratch: Iterable[str] = (),
) -> Iterator[Claim]:
    """Claim the output folder ``out`` for ``command`` (see the module doc).

    ``settings`` are the run's result-changing settings (JSON values); ``inputs`` the
    paths it reads; ``owned`` the file names (relative) a run of ``command`` writes,
    deleted before the new run writes (with the ``files`` its previous record lists);
    ``owned_dirs`` folders deleted only when the settings changed (``force``);
    ``scratch`` sub-folders whose stale temporary files are removed too.
    """
    folder = _check_target(out, inputs, is_file=False)
    record_path = folder / RECORD_FILES[command]
    _mkdir(folder)
    with _locked(folder / LOCK_FILE, folder, command) as lock:
        claim = Claim(folder, command, record_path, _plain(settings), _lock=lock)
        for sub in dict.fromkeys(
            [*owned_dirs, *scratch]
        ):  # folders the run writes into: never a link
            if (folder / sub).is_symlink():
                raise CurateError(
                    f"{folder / sub} is a symbolic link inside --out; curate never writes through a "
                    "link, so nothing was written",
                    hint="remove the link (curate makes the folder), or choose another --out",
                )
        others = [p for p in folder.iterdir() if p.name != LOCK_FILE and not _is_tmp(p.name)]
        previous = _previous_run(folder, command, others)
        _compare(claim, previous, force)
        for scratch_dir in (folder, *(folder / s for s in scratch)):
            remove_stale_tmp(scratch_dir)
        files = list(owned) + [
            str(f) for f in (previous or {}).get("files", []) if isinstance(f, str)
        ]
        if previous is not None and claim.changes:
            files += list(owned_dirs)
        with _running(claim):
            claim.replaced = _delete_owned(folder, files, keep=RECORD_FILES[command])
            yield claim


@contextlib.contextmanager
def claim_file(
    out: str | os.PathLike[str],
    command: str,
    *,
    settings: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    force: bool = False,
) -> Iterator[Claim]:
    """Claim the output file ``out`` (and its record ``<stem>.run.json``) for ``command``."""
    target = _check_target(out, inputs, is_file=True)
    record_path = target.with_suffix(".run.json")
    _mkdir(target.parent)
    with _locked(target.parent / f".{target.name}.lock", target, command) as lock:
        claim = Claim(target, command, record_path, _plain(settings), _lock=lock)
        previous = None
        if os.path.lexists(target) or os.path.lexists(record_path):
            previous = _record(record_path) if os.path.lexists(record_path) else None
            if previous is None or previous.get("command") != command:
                raise CurateError(
                    f"--out-file {target} exists and was not written by curate {command} "
                    f"(no {record_path.name} of a {command} run beside it); curate never replaces it",
                    hint="choose a new file name for --out-file",
                )
        _compare(claim, previous, force)
        remove_stale_tmp(target.parent, names=(target.name, record_path.name))
        with _running(claim):
            claim.replaced = _delete_owned(target.parent, [target.name], keep=record_path.name)
            yield claim


def require_complete(
    folder: str | os.PathLike[str], *, record: str = "run.json", what: str = "folder"
) -> None:
    """Refuse a folder whose run record says the run did not complete (see the module doc).

    A folder without a record, or with a record of an earlier curate (no ``state``), passes.
    """
    p = Path(folder)
    rec_path = p / record
    if not os.path.lexists(rec_path):
        return
    rec = _record(rec_path)
    state = rec.get("state")
    if state in (None, COMPLETE):
        return
    command = rec.get("command", "curate")
    if _lock_held(p / LOCK_FILE):
        raise CurateError(
            f"{what} {p} is being written by `curate {command}` right now (its run is not finished)",
            hint="wait for that command to finish, then run this one again",
        )
    why = {
        RUNNING: "was killed before it finished",
        INTERRUPTED: "was interrupted",
        FAILED: f"failed: {rec.get('error') or 'see its output'}",
    }.get(str(state), f"is in state {state!r}")
    raise CurateError(
        f"{what} {p} holds an incomplete `curate {command}` run: it {why}, so its files do not "
        "belong together",
        hint=f"run `curate {command}` into it again (same settings: no --force "
        "needed), or pass a complete folder",
    )


@contextlib.contextmanager
def locked(folder: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold ``folder``'s lock for a command that writes into a folder another command made
    (``curate report`` into a screen folder)."""
    p = Path(folder)
    with _locked(p / LOCK_FILE, p, command):
        yield


def check_output_file(
    out: str | os.PathLike[str],
    *,
    option: str,
    what: str,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    force: bool = False,
    ours: Any = None,
) -> Path:
    """The policy for a single output file that carries no run record of its own (the
    report of ``curate report --out-file``, the metrics of ``curate evaluate --out-file``).

    Refused, ``force`` or not: a folder, ``/``, one of the command's ``inputs`` (a file,
    or any existing file inside an input folder that ``ours`` does not recognise as an
    earlier output of this command). An existing file that ``ours(path)`` does not
    recognise needs ``force``; a symbolic link there is replaced, never followed (the
    write is atomic). Returns the absolute path to write.
    """
    target = Path(os.path.abspath(Path(out).expanduser()))
    if target.is_dir() and not target.is_symlink():
        raise CurateError(
            f"{option} {target} is a folder; {what} is one file",
            hint=f"name a file, for example {option} {target / _example_name(target, what)}",
        )
    parent = _real(target.parent)
    if parent == Path(parent.anchor):
        raise CurateError(
            f"{option} {target} is in the root folder {parent.anchor}; curate never writes there",
            hint=f"choose a file in another folder for {option}",
        )
    if not os.path.lexists(target):
        return target
    is_link = target.is_symlink()
    real = _real(target)
    mine = not is_link and ours is not None and _is_ours(ours, target)
    for given in inputs:
        if given is None:
            continue
        src = _real(Path(given).expanduser())
        if real == src:
            raise CurateError(
                f"{option} {target} is this command's input {given}; writing {what} there would "
                "overwrite it",
                hint=f"choose another file for {option}",
            )
        if not mine and (src == parent or src in parent.parents):
            raise CurateError(
                f"{option} {target} is a file inside this command's input {given}; writing {what} "
                "there would overwrite it",
                hint=f"choose a new file for {option}",
            )
    if not mine and not force:
        kind = "a symbolic link" if is_link else f"not {what} written by curate"
        raise CurateError(
            f"{option} {target} exists and is {kind}; curate does not replace it without asking",
            hint=f"pass --force to replace it, or choose a new file for {option}",
        )
    return target


def _is_ours(ours: Any, path: Path) -> bool:
    try:
        return bool(ours(path))
    except (OSError, ValueError, CurateError):
        return False


def _example_name(folder: Path, what: str) -> str:
    return "report.html" if "report" in what else "metrics.json"


def head_bytes(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` bytes of a regular file (``OSError`` for anything else)."""
    with open_regular(path) as f:
        return f.read(n)


# ----------------------------------------------------------------------------- the policy


def _check_target(
    out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], *, is_file: bool
) -> Path:
    target = Path(os.path.abspath(Path(out).expanduser()))
    real = _real(target)
    folder_of = real.parent if is_file else real
    opt = "--out-file" if is_file else "--out"
    if folder_of == Path(folder_of.anchor):
        raise CurateError(
            f"{opt} {out} is the root folder {real.anchor}; curate never writes there",
            hint="choose a file in another folder, for example --out-file runs/faces.parquet"
            if is_file
            else "choose a new folder, for example --out runs/NAME",
        )
    if os.path.lexists(target) and not os.path.exists(target):
        raise CurateError(
            f"{opt} {target} is a broken link", hint=f"remove the link or choose another {opt}"
        )
    if is_file and target.is_dir():
        raise CurateError(
            f"--out-file {target} is a folder; this command writes one file",
            hint="name a file, for example --out-file faces.parquet",
        )
    if not is_file and os.path.exists(target) and not target.is_dir():
        raise CurateError(
            f"--out {target} exists and is not a folder",
            hint="choose a new or empty folder for --out",
        )
    for given in inputs:
        if given is None:
            continue
        if _real(Path(given).expanduser()) == real:
            raise CurateError(
                f"{opt} {target} is this command's input {given}; writing there would overwrite it",
                hint=f"choose a separate {opt}",
            )
    return target


def _previous_run(folder: Path, command: str, others: list[Path]) -> dict[str, Any] | None:
    """The previous run's record in ``folder`` (None when the folder is empty), or a
    :class:`CurateError` when the folder holds something else."""
    if not others:
        return None
    found = {}
    for name in set(RECORD_FILES.values()):
        if os.path.lexists(folder / name):
            found[name] = _record(folder / name)
    rec = found.get(RECORD_FILES[command])
    prev_cmd = rec.get("command") if rec else None
    if prev_cmd is None and "export.json" in found:
        prev_cmd, rec = "export", found["export.json"]
    if prev_cmd is None and (folder / "checkpoints" / "last.json").is_file():
        prev_cmd, rec = "finetune", {"command": "finetune", "state": INTERRUPTED}
    if prev_cmd is None:
        names = ", ".join(sorted(p.name for p in others)[:5]) + (", ..." if len(others) > 5 else "")
        raise CurateError(
            f"--out {folder} is not empty ({names}) and holds no curate run; curate never writes into "
            "a folder it did not make",
            hint="choose a new or empty folder for --out",
        )
    if prev_cmd != command:
        raise CurateError(
            f"--out {folder} holds the output of `curate {prev_cmd}`, not of `curate {command}`; "
            "each command writes its own folder",
            hint="choose another --out",
        )
    assert rec is not None
    return rec


def _compare(claim: Claim, previous: Mapping[str, Any] | None, force: bool) -> None:
    if previous is None:
        return
    state = previous.get("state")
    claim.previous_state = "legacy" if state is None else str(state)
    old = previous.get("settings")
    legacy = not isinstance(old, dict)
    if not isinstance(old, dict):
        params = previous.get("params")
        old = params if isinstance(params, dict) else {}
    changes = {}
    for k, new in claim.settings.items():
        if k not in old or (legacy and new is None):
            continue  # the earlier run did not record it, or an earlier curate resolved it
        if _plain(old[k]) != new:
            changes[k] = (old[k], new)
    claim.changes = changes
    if changes and not force:
        diff = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in changes.items())
        raise CurateError(
            f"--out {claim.path} holds a previous `curate {claim.command}` run with other settings "
            f"({diff})",
            hint="pass --force to replace it, or choose another --out",
        )


def _delete_owned(folder: Path, names: Sequence[str], *, keep: str) -> list[str]:
    """Delete the files (and owned folders) of a previous run; never a path outside ``folder``,
    never through a link; then the folders they leave empty. Returns what was deleted."""
    base = _real(folder)
    deleted: list[str] = []
    parents: set[Path] = set()
    for name in dict.fromkeys(names):
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or name == keep:
            continue
        p = folder / rel
        parent = _real(p.parent)
        if (
            parent != base and base not in parent.parents
        ):  # a link on the way leads out of the folder
            continue
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        else:
            continue
        deleted.append(name)
        parents.update(q for q in rel.parents if q != Path("."))
    for d in sorted(parents, key=lambda q: len(q.parts), reverse=True):
        with contextlib.suppress(OSError):
            (folder / d).rmdir()  # only when empty: user files keep their folder
    return deleted


@contextlib.contextmanager
def _running(claim: Claim) -> Iterator[None]:
    """The record says ``running`` while the run writes, ``failed`` or ``interrupted`` if it stops."""
    start = {
        "command": claim.command,
        "state": RUNNING,
        "settings": claim.settings,
        "pid": os.getpid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(start, claim.record_path)
    try:
        yield
    except BaseException as exc:
        if _record(claim.record_path).get("state") != COMPLETE:
            state = FAILED if isinstance(exc, Exception) else INTERRUPTED
            write_json(
                {**start, "state": state, "error": str(exc)[:2000] or type(exc).__name__},
                claim.record_path,
            )
        raise


# ----------------------------------------------------------------------------- the lock


@contextlib.contextmanager
def _locked(lock_path: Path, target: Path, command: str) -> Iterator[Any]:
    if fcntl is None:  # pragma: no cover
        yield None
        return
    try:
        fd = open_lock_file(lock_path)
    except OSError as exc:
        if not isinstance(exc, LinkInOutput):
            raise disk_error(lock_path, exc) if exc.errno in DISK_ERRNOS else exc from exc
        raise CurateError(
            f"the lock file {exc.strerror}; curate never writes through a link, so it did not "
            f"take the lock of --out {target}",
            hint=f"delete {lock_path} (curate makes a new one), or choose another --out",
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            raise CurateError(
                f"--out {target} is being written by another curate command{holder}; two runs into "
                "one output would mix or replace each other's files",
                hint="wait for it to finish, or choose another --out",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": command}).encode())
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _lock_holder(fd: int) -> str:
    try:
        info = loads_json(os.pread(fd, 4096, 0) or b"{}")
        return f" (`curate {info['command']}`, pid {int(info['pid'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _lock_held(lock_path: Path) -> bool:
    if fcntl is None or lock_path.is_symlink() or not lock_path.is_file():  # pragma: no cover
        return False
    try:
        fd = os.open(
            lock_path,
            os.O_RDONLY
            | getattr(os, "O_CLOEXEC", 0)
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_NONBLOCK", 0),
        )
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# ----------------------------------------------------------------------------- helpers


def _record(path: Path) -> dict[str, Any]:
    rec = read_json_file(
        path,
        what="run record",
        hint="delete the folder (it holds a broken run record) or choose another --out",
    )
    if not isinstance(rec, dict):
        raise CurateError(
            f"run record {path} does not hold a JSON object",
            hint="delete it, or choose another --out",
        )
    return rec


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(folder, exc) if exc.errno in DISK_ERRNOS else exc from exc


def _is_tmp(name: str) -> bool:
    return name.startswith(".") and name.endswith(
        TMP_SUFFIX
    )  # an atomic write's (see remove_stale_tmp)


def _real(p: Path) -> Path:
    return Path(absolute(p))


def _plain(obj: Any) -> Any:
    """JSON values as they read back (tuples as lists, paths as text)."""
    return json.loads(json.dumps(obj, default=str))


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
