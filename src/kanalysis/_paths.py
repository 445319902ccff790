"""Safe paths: what kanalysis may read, and where it may write, checked before any work starts.

A tool for patient data must never destroy a user's files, and must never hang on a file it should
not have opened. The rules, applied by every command (``synth``, ``import``, ``validate --report``,
``run``) and by the savers of the Python API:

Outputs (:func:`check_output_dir`, :func:`check_output_file`)
    - kanalysis writes a folder only where nothing exists yet, where an *empty* folder exists, or
      where a folder carries kanalysis' own marker: a cohort folder with its ``metadata.json``
      (:data:`COHORT_MARKER`), a run folder with ``.kanalysis-run.json`` (:data:`RUN_MARKER`).
      Anything else is refused, never replaced.
    - A file output (an import report, an id key) may replace only a file kanalysis wrote itself,
      recognised by its first bytes (``signature``).
    - An output that is, contains or lies inside an input is refused.
    - Special files (FIFOs, devices, sockets), symbolic links at the output path and paths under an
      existing file are refused.
    - The folder that will receive the output must be writable: this is checked up front, so that a
      long computation does not end in "permission denied".

Inputs (:func:`check_input_file`, :func:`check_input_dir`)
    - A table file must be a regular file: a folder, a FIFO or a device is refused *before* it is
      opened (opening a FIFO for reading blocks until a writer appears).

All refusals raise :class:`OutputPathError` or :class:`InputFileError`, both kanalysis errors
(``KanalysisError``, ``ValueError``), with a message naming the path and the rule.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kanalysis.errors import ConfigurationError, DataValidationError

__all__ = [
    "COHORT_MARKER",
    "RUN_MARKER",
    "InputFileError",
    "Marker",
    "OutputPathError",
    "check_input_dir",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "describe_special",
    "write_marker",
]


class OutputPathError(ConfigurationError):
    """An output path kanalysis refuses to write (foreign folder, input, special file, ...)."""


class InputFileError(DataValidationError):
    """An input path kanalysis refuses to read (missing, a folder, a FIFO or a device)."""


@dataclass(frozen=True)
class Marker:
    """A file that identifies a folder as written by kanalysis.

    Parameters
    ----------
    name : str
        File name inside the folder.
    what : str
        What such a folder is, for messages ("a kanalysis cohort folder").
    check : callable, optional
        ``check(path) -> bool`` on the marker file's path; True when its content is kanalysis'.
    """

    name: str
    what: str
    check: Callable[[Path], bool] | None = None

    def present(self, folder: Path) -> bool:
        path = folder / self.name
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                return False
        except OSError:
            return False
        return True if self.check is None else bool(self.check(path))


def _is_cohort_metadata(path: Path) -> bool:
    try:
        if path.stat().st_size > 10_000_000:
            return False
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "schema_version" in meta


def _is_run_marker(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("kanalysis") == "run"


COHORT_MARKER = Marker("metadata.json", "a kanalysis cohort folder (metadata.json with "
                       "schema_version)", _is_cohort_metadata)
RUN_MARKER = Marker(".kanalysis-run.json", "a kanalysis run folder (.kanalysis-run.json)",
                    _is_run_marker)


def write_marker(folder: str | os.PathLike, marker: Marker = RUN_MARKER, **info) -> Path:
    """Write ``marker`` into ``folder`` (for :data:`RUN_MARKER`: ``{"kanalysis": "run", ...}``)."""
    path = Path(folder) / marker.name
    body = {"kanalysis": "run", **info} if marker is RUN_MARKER else info
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def describe_special(mode: int) -> str | None:
    """'a FIFO (named pipe)', 'a character device', ... for a special file's mode, else None."""
    for test, name in _SPECIAL:
        if test(mode):
            return name
    return None


def _text_path(path, what: str, error: type[Exception]) -> Path:
    if path is None or (isinstance(path, str) and not path.strip()):
        raise error(f"{what}: the path is empty; give a file or folder name.")
    if isinstance(path, str) and "\x00" in path:
        raise error(f"{what}: the path contains a NUL byte.")
    try:
        return Path(os.fspath(path))
    except TypeError:
        raise error(f"{what}: expected a path, got {type(path).__name__}.") from None


def _real(path: Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _under_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (a path 'under a file'),
    named as in ``path`` (relative stays relative), however many levels below it ``path`` lies."""
    for parent in path.parents:
        try:
            st = parent.stat()
        except (FileNotFoundError, NotADirectoryError):  # a level further under the file
            continue
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return parent
        return None
    return None


def _nearest_existing(path: Path) -> Path:
    """The nearest existing ancestor folder of ``path``, named as in ``path`` (``.`` for a bare
    relative name)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def _parent_as_given(out: Path) -> str:
    """The folder holding ``out``, named relative to ``out`` as given (``..`` for ``.``)."""
    return str(out.parent) if out.name not in ("", "..") else os.path.join(str(out), os.pardir)


def _check_writable(folder: Path, shown: str, what: str, named: str | None = None) -> None:
    """Can a file be created in ``folder``? Probed with a temporary file (root ignores modes).

    The message names the folder as ``named`` (the way the user gave the output), else as
    ``folder``.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".kanalysis-probe-", dir=folder)
    except OSError as err:
        raise OutputPathError(
            f"{what} {shown!r}: cannot write in {named or str(folder)!r} ({err.strerror or err}); "
            "choose a folder you can write to."
        ) from None
    os.close(fd)
    os.unlink(probe)


def _check_not_input(out: Path, inputs: Iterable, shown: str, what: str) -> None:
    real_out = _real(out)
    for item in inputs or ():
        if item is None:
            continue
        inp = _real(Path(os.fspath(item)))
        if real_out == inp:
            raise OutputPathError(f"{what} {shown!r} is an input ({str(item)!r}); kanalysis never "
                                  "writes over its inputs: choose another output.")
        if inp.is_relative_to(real_out):
            raise OutputPathError(f"{what} {shown!r} contains an input ({str(item)!r}); writing "
                                  "it would replace the input: choose another output.")
        if real_out.is_relative_to(inp) and inp.is_dir():
            raise OutputPathError(f"{what} {shown!r} lies inside an input folder ({str(item)!r}); "
                                  "keep outputs out of the folders kanalysis reads.")


def check_output_dir(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    marker: Marker | None = COHORT_MARKER,
    what: str = "output folder",
) -> Path:
    """Check that ``path`` may be written (or replaced) as a kanalysis output folder.

    Call it before any work starts. Nothing is created or changed, except a temporary probe file
    created and removed to test that the destination is writable.

    Parameters
    ----------
    path : path-like
        The folder to write.
    inputs : iterable of path-like
        Files and folders the command reads: the output may not be, contain or lie inside one.
    marker : Marker or None
        The marker an existing non-empty folder must carry to be replaced (:data:`COHORT_MARKER`,
        :data:`RUN_MARKER`); None: only a missing or empty folder is accepted.
    what : str
        How the path is named in messages (``"--out"``).

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    OutputPathError
        The path is empty, a file, a special file, a symbolic link, under a file, an input (or holds
        or lies in one), a non-empty folder without the marker, or not writable.
    """
    out = _text_path(path, what, OutputPathError)
    shown = str(path)
    blocker = _under_file(out)
    if blocker is not None:
        raise OutputPathError(f"{what} {shown!r} lies under {str(blocker)!r}, which is a file, not a "
                              "folder.")
    try:
        st = out.lstat()
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise OutputPathError(f"{what} {shown!r} cannot be inspected: {err.strerror or err}.") from None
    _check_not_input(out, inputs, shown, what)
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputPathError(f"{what} {shown!r} is a symbolic link; kanalysis does not replace "
                                  "links: give the real folder or a new name.")
        special = describe_special(st.st_mode)
        if special:
            raise OutputPathError(f"{what} {shown!r} is {special}, not a folder; refused.")
        if not stat.S_ISDIR(st.st_mode):
            raise OutputPathError(f"{what} {shown!r} is an existing file, not a folder; kanalysis "
                                  "will not replace it: choose another name.")
        try:
            empty = not any(os.scandir(out))
        except OSError as err:
            raise OutputPathError(f"{what} {shown!r} cannot be read: {err.strerror or err}.") from None
        if not empty and (marker is None or not marker.present(out)):
            kind = f"it is not {marker.what}" if marker is not None else "it is not empty"
            raise OutputPathError(
                f"{what} {shown!r} already exists and {kind}; kanalysis replaces only folders it "
                "wrote itself: choose a new or empty folder."
            )
        _check_writable(_real(out).parent, shown, what, named=_parent_as_given(out))
        _check_writable(_real(out), shown, what, named=shown)
    else:
        _check_writable(_nearest_existing(out), shown, what)
    return out


def check_output_file(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    signature: bytes | tuple[bytes, ...] | None = None,
    what: str = "output file",
) -> Path:
    """Check that ``path`` may be written as a kanalysis output file (a report, an id key).

    An existing file is replaced only when it starts with ``signature`` (a file kanalysis wrote);
    folders, special files, links, inputs and paths under a file are refused.

    Raises
    ------
    OutputPathError
    """
    out = _text_path(path, what, OutputPathError)
    shown = str(path)
    blocker = _under_file(out)
    if blocker is not None:
        raise OutputPathError(f"{what} {shown!r} lies under {str(blocker)!r}, which is a file, not a "
                              "folder.")
    _check_not_input(out, inputs, shown, what)
    try:
        st = out.lstat()
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputPathError(f"{what} {shown!r} is a symbolic link; refused.")
        special = describe_special(st.st_mode)
        if special:
            raise OutputPathError(f"{what} {shown!r} is {special}; refused.")
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(f"{what} {shown!r} is a folder, not a file.")
        signatures = (signature,) if isinstance(signature, bytes) else tuple(signature or ())
        try:
            with open(out, "rb") as handle:
                head = handle.read(256)
        except OSError as err:
            raise OutputPathError(f"{what} {shown!r} cannot be read: {err.strerror or err}.") from None
        if not signatures or not any(head.lstrip().startswith(s) for s in signatures):
            raise OutputPathError(f"{what} {shown!r} already exists and was not written by "
                                  "kanalysis; it will not be replaced: choose another name.")
        _check_writable(_real(out).parent, shown, what, named=_parent_as_given(out))
    else:
        _check_writable(_nearest_existing(out), shown, what)
    return out


def check_input_file(path: str | os.PathLike, *, table: str | None = None,
                     what: str = "input file") -> Path:
    """Check that ``path`` is a regular file before it is opened; return it as a Path.

    Raises
    ------
    InputFileError
        Missing, a folder, a FIFO, a device or a socket (never opened: a FIFO would block).
    """
    label = f"{what} for {table}" if table else what
    p = _text_path(path, label, InputFileError)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputFileError(f"{label} {str(path)!r}: file not found.") from None
    except OSError as err:
        raise InputFileError(f"{label} {str(path)!r} cannot be inspected: {err.strerror or err}.") from None
    special = describe_special(st.st_mode)
    if special:
        raise InputFileError(f"{label} {str(path)!r} is {special}, not a regular file; kanalysis "
                             "does not read from it.")
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{label} {str(path)!r} is a folder, not a file.")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{label} {str(path)!r} is not a regular file.")
    return p


def check_input_dir(path: str | os.PathLike, *, what: str = "input folder") -> Path:
    """Check that ``path`` is an existing folder (not a file or special file); return it."""
    p = _text_path(path, what, InputFileError)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputFileError(f"{what} {str(path)!r} does not exist.") from None
    except OSError as err:
        raise InputFileError(f"{what} {str(path)!r} cannot be inspected: {err.strerror or err}.") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = describe_special(st.st_mode) or "a file"
        raise InputFileError(f"{what} {str(path)!r} is {kind}, not a folder.")
    return p
