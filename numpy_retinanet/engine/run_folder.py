"""The run folder: claimed by one training at a time, never overwritten by accident.

    with claim_run_folder(out_dir, resume=False, force=False):
        ...  # write checkpoint.npz, metrics.json, the pictures

Claiming a folder (1) creates it, (2) takes an exclusive lock on ``out_dir/.lock`` and
(3) refuses a folder that already holds a run unless the run is resumed or ``force``
is given. The lock comes first, so two trainings started at once cannot both find the
folder empty: the second is refused with the first one's process id.

The lock is an ``fcntl.flock`` on an open file. The kernel holds it, not the file: a
process that dies (even by SIGKILL) releases it, so a lock is never left stale. The
file is removed when the claim ends; because another process may have opened it just
before, a claim checks after locking that the path still names the file it locked, and
starts again if not. On a system without ``fcntl`` (Windows) no lock is taken.

``hold_folder`` takes the same lock on a folder of many runs (``ablate --work``),
``write_atomically`` writes a run's file (a checkpoint, ``metrics.json``) whole or not at all,
``make_output_folder`` makes the folder of ``detect`` and ``figures``, and ``json_text`` is the
JSON of ``metrics.json`` and of ``evaluate --json``.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the run folder check below still holds
    fcntl = None

#: The files a training writes into its run folder (engine/trainer.py).
RUN_FILES = ("checkpoint.npz", "metrics.json", "training_curve.png", "detections.png")
LOCK_NAME = ".lock"


class RunFolderInUse(ValueError):
    """Another process is training into the folder."""


@contextmanager
def claim_run_folder(out_dir, resume=False, force=False):
    """Create ``out_dir`` if needed and hold it for this process until the block ends.

    Parameters
    ----------
    out_dir : the run folder.
    resume : the folder's run is being continued: its files are expected.
    force : replace the run the folder holds (its run files are deleted once the folder is locked).

    Raises ValueError (naming the folder and the way out) when ``out_dir`` is a file, holds a
    run and neither ``resume`` nor ``force`` is given, or is locked by another process; OSError
    (naming the folder) when it cannot be created or written.
    """
    with hold_folder(out_dir) as out_dir:
        held = [name for name in RUN_FILES if os.path.exists(os.path.join(out_dir, name))]
        if held and not resume:
            if not force:
                raise ValueError(
                    f"the run folder {out_dir!r} already holds a run ({', '.join(held)}). Continue it with "
                    f"--resume {out_dir}, train into another folder with --out, or replace it with --force")
            for name in held:
                os.remove(os.path.join(out_dir, name))
        yield out_dir


def make_output_folder(folder, flag="--out", what=None):
    """Make the folder ``folder`` that a command writes its files in (and its parents); returns it.

    A path that is a file, or a folder that cannot be made, is a ValueError naming it as ``what``
    (default: ``flag``, the option or argument it came from), not a bare "[Errno 17] File exists".
    ``hold_folder`` and ``claim_run_folder`` make their folder with it too.
    """
    what = flag if what is None else what
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{what} {os.fspath(folder)!r} is a file, not a folder: give another {flag}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot make {what} {os.fspath(folder)!r}: {e.strerror or e}") from e
    return folder


@contextmanager
def hold_folder(folder, flag="--out", refusal=None):
    """Create ``folder`` if needed and hold its lock until the block ends: steps (1) and (2) of a
    claim, which adds the check of the run files. Alone, for a folder of many runs (``ablate
    --work``): a second command on it is refused at once rather than meeting the first one's runs later.

    ``flag`` is the option that names the folder (its messages name "the run folder" for
    ``--out``); ``refusal`` the message of RunFolderInUse, with ``{holder}`` for the other
    process's id (default: the run folder's).
    """
    folder = os.fspath(folder)
    what = "the run folder" if flag == "--out" else flag
    make_output_folder(folder, flag, what)
    if refusal is None:
        refusal = (f"{what} {folder!r} is in use by another training (process {{holder}}); wait for it to end "
                   f"or give another {flag}")
    try:
        lock = _lock(folder, refusal)
    except OSError as e:
        raise OSError(e.errno, f"cannot write in {what} {folder!r}: {e.strerror}") from e
    try:
        yield folder
    finally:
        _unlock(folder, lock)


def write_atomically(path, write):
    """Write ``path`` whole or not at all: ``write(f)`` fills a binary file under the name ``.<name>.tmp``
    beside it, which is flushed to disk, then renamed over ``path`` (``os.replace`` is atomic on POSIX
    and Windows). A process killed while writing leaves the old file or the new one, never half of one;
    the temporary name is fixed, so it leaves at most that one file, which the next write replaces. The
    file gets mode 0666 less the umask, as ``open()`` gives (``tempfile.mkstemp`` would force 0600).
    An error in opening names ``path``, not the temporary file."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path!r}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def json_text(value, indent=1):
    """``value`` as strict JSON: a NaN or infinite float becomes null.

    The evaluation's NaN means "nothing to score" (COCO prints -1 there): the AP of a class
    with no object among the images scored, AP_large when no object is that large. Python's
    json writes it as the bare word NaN, which is not JSON: jq, JavaScript and most other
    readers refuse the whole file.
    """
    def strict(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: strict(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [strict(x) for x in v]
        return v

    return json.dumps(strict(value), indent=indent, allow_nan=False)


def write_run_file(path, text):
    """Write the text file ``path`` whole or not at all (``write_atomically``): ``metrics.json`` of a long
    run is a few MB, and half of it would make a finished run look unreadable."""
    write_atomically(path, lambda f: f.write(text.encode()))


def _lock(out_dir, refusal):
    """An open file descriptor of ``out_dir/.lock`` holding an exclusive flock (None without fcntl).
    Raises RunFolderInUse with ``refusal`` (``{holder}``: the other process's id) when another holds it."""
    if fcntl is None:
        return None
    path = os.path.join(out_dir, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderInUse(refusal.replace("{holder}", holder)) from None
        # The file we locked may have been removed (and perhaps made again) by its previous
        # holder between our open and our flock: then the lock guards nothing. Try again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


def _unlock(out_dir, fd):
    if fd is None:
        return
    try:
        os.remove(os.path.join(out_dir, LOCK_NAME))  # while still locked: nobody can hold a lock on it now
    except FileNotFoundError:
        pass
    os.close(fd)  # releases the lock
