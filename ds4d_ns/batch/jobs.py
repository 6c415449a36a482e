"""JOBS: which clips a batch runs, read from a CSV file or a folder of clips, every problem named before any work.

A clip is one of

* ``video``: a video file (one of :data:`~ds4d_ns.process.frames.VIDEO_SUFFIXES`), made into a dataset by
  ``ds4d-process``;
* ``frames``: a folder of images (one of :data:`~ds4d_ns.process.frames.IMAGE_SUFFIXES`), the same;
* ``dataset``: a folder holding ``transforms.json``, a ready dataset (made by ``ds4d-process``,
  ``ds4d-synth`` or by hand), trained as it is.

**A folder** lists one clip per entry (hidden entries skipped; the clip's name is the file's stem or the
folder's name); files that are neither videos nor folders are ignored and said so; a sub-folder that is
neither a dataset nor a folder of images is an error (it looks like a clip and is not one).

**A CSV** (UTF-8, first line the column names) lists one clip per row: ``input`` (required; paths relative
to the CSV's folder) and the optional columns of :data:`CSV_COLUMNS`: ``name``, ``method`` (a ds4d method
for this clip) and, for videos and frame folders, the ``ds4d-process`` options ``num_frames``, ``resolution``,
``matting``, ``masks``, ``pseudo_views`` and ``pseudo_release``. An empty cell takes the batch's default.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, List, Literal, Optional, Tuple

from ds4d_ns.data.dataset_format import TRANSFORMS_NAME
from ds4d_ns.errors import UserError
from ds4d_ns.process.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key

ClipKind = Literal["video", "frames", "dataset"]

CSV_COLUMNS: Tuple[str, ...] = (
    "input",
    "name",
    "method",
    "num_frames",
    "resolution",
    "matting",
    "masks",
    "pseudo_views",
    "pseudo_release",
)
"""Columns a JOBS CSV may have (``-`` may stand for ``_``; case is ignored); only ``input`` is required."""
PROCESS_COLUMNS: Tuple[str, ...] = CSV_COLUMNS[3:]
"""The columns that are ``ds4d-process`` options (for videos and frame folders only)."""
MATTING_CHOICES = ("none", "white", "rembg")
RELEASE_CHOICES = ("v1.1", "v1.2")


class JobsError(UserError):
    """JOBS cannot be used; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class ClipJob:
    """One clip of a batch and how to run it."""

    name: str
    """The clip's name: its folder in OUT (``OUT/clips/NAME``) and its row in the summary."""
    source: Path
    """The video, frame folder or dataset folder (absolute)."""
    kind: ClipKind
    """video, frames (both made into a dataset by ds4d-process) or dataset (trained as it is)."""
    origin: str
    """Where JOBS lists it (``jobs.csv line 3``, ``folder clips/``), for messages."""
    method: Optional[str] = None
    """The ds4d method for this clip; None takes the batch's --method."""
    process: Dict[str, Any] = field(default_factory=dict)
    """ds4d-process options given for this clip (``ProcessConfig`` field names; paths absolute)."""

    def identity(self) -> Dict[str, Any]:
        """What the clip's outputs are made from, as recorded in the batch manifest."""
        options = {key: str(value) if isinstance(value, Path) else value for key, value in self.process.items()}
        return {"source": str(self.source), "kind": self.kind, "method": self.method, "process": options}


def clip_kind(path: Path) -> Optional[ClipKind]:
    """What ``path`` is as a clip, or None when it is none of them."""
    if path.is_file():
        return "video" if path.suffix.lower() in VIDEO_SUFFIXES else None
    if not path.is_dir():
        return None
    if (path / TRANSFORMS_NAME).is_file():
        return "dataset"
    try:
        has_images = any(
            entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
            for entry in path.iterdir()
        )
    except OSError:
        return None
    return "frames" if has_images else None


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _check_name(name: str, where: str) -> str:
    """``name`` if it is usable as one folder's name inside OUT, else a :class:`JobsError`."""
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name:
        raise JobsError(f"{where}: clip name {name!r} cannot name a folder (empty, hidden or with a slash); rename it")
    if any(ord(c) < 32 for c in name) or len(name) > 200:
        raise JobsError(f"{where}: clip name {name!r} has control characters or is too long; rename it")
    return name


def read_jobs(jobs: Path, out: Path, methods: Collection[str]) -> List[ClipJob]:
    """Every clip JOBS lists, checked; nothing is written.

    Args:
        jobs: a CSV file or a folder of clips.
        out: the batch's output folder (skipped when it lies in the JOBS folder; no clip may lie in it).
        methods: the ds4d methods a CSV's ``method`` column may name.

    Raises:
        JobsError: naming the file (and line) and the fix, for the first problem found.
    """
    jobs = Path(jobs)
    if jobs.is_dir():
        if (jobs / TRANSFORMS_NAME).is_file():
            raise JobsError(
                f"JOBS {jobs} is one dataset (it holds {TRANSFORMS_NAME}); give the folder that holds it, or list it "
                "in a CSV"
            )
        clips = _scan_folder(jobs, _absolute(out))
    elif jobs.is_file():
        if jobs.suffix.lower() != ".csv":
            raise JobsError(f"JOBS {jobs}: not a CSV file (.csv) nor a folder of clips")
        clips = _read_csv(jobs, methods)
    else:
        raise JobsError(f"JOBS {jobs}: no such file or folder; give a CSV file or a folder of clips")
    if not clips:
        raise JobsError(
            f"JOBS {jobs}: no clips in it (videos {', '.join(VIDEO_SUFFIXES)}, folders of images, or datasets with "
            f"{TRANSFORMS_NAME})"
        )
    seen: Dict[str, ClipJob] = {}
    for clip in clips:
        if clip.name in seen:
            raise JobsError(
                f"JOBS {jobs}: two clips are named {clip.name!r} ({seen[clip.name].origin}: {seen[clip.name].source}; "
                f"{clip.origin}: {clip.source}); give them different names"
            )
        seen[clip.name] = clip
    _refuse_overlap(clips, _absolute(out))
    return clips


def _refuse_overlap(clips: List[ClipJob], out: Path) -> None:
    """No clip may lie inside OUT (the batch writes there), and OUT may not lie inside a clip."""
    for clip in clips:
        for inner, outer, what in ((clip.source, out, "lies inside OUT"), (out, clip.source, "holds OUT")):
            if inner == outer or outer in inner.parents:
                raise JobsError(
                    f"{clip.origin}: the clip {clip.source} {what} ({out}); pick an OUT apart from the clips"
                )
        for option in ("masks", "pseudo_views"):
            path = clip.process.get(option)
            if path is not None and (path == out or out in Path(path).parents):
                raise JobsError(f"{clip.origin}: {option} {path} lies inside OUT ({out}); pick an OUT apart from them")


def _scan_folder(folder: Path, out: Path) -> List[ClipJob]:
    clips: List[ClipJob] = []
    ignored: List[str] = []
    origin = f"folder {folder}"
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith(".") or _absolute(entry) == out:
            continue
        kind = clip_kind(entry)
        if kind is None and entry.is_dir():
            raise JobsError(
                f"JOBS {folder}: {entry.name}/ is not a clip (no images, no {TRANSFORMS_NAME}); move it out of JOBS "
                "or list the clips in a CSV"
            )
        if kind is None:
            ignored.append(entry.name)
            continue
        name = entry.stem if kind == "video" else entry.name
        clips.append(ClipJob(_check_name(name, f"{origin}: {entry.name}"), _absolute(entry), kind, origin))
    if ignored:
        from nerfstudio.utils.rich_utils import CONSOLE
        from rich.markup import escape

        CONSOLE.log(f"JOBS {escape(str(folder))}: not clips, ignored: {escape(', '.join(ignored))}")
    return clips


def _column(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _read_csv(path: Path, methods: Collection[str]) -> List[ClipJob]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise JobsError(f"JOBS {path}: cannot be read as a UTF-8 CSV ({type(err).__name__}: {err})") from err
    if not rows:
        raise JobsError(f"JOBS {path}: empty; its first line names the columns ({', '.join(CSV_COLUMNS)})")
    header_line, header = rows[0]
    columns = [_column(name) for name in header]
    unknown = [name for name, column in zip(header, columns) if column not in CSV_COLUMNS]
    if unknown:
        raise JobsError(
            f"JOBS {path}, line {header_line}: unknown columns {unknown}; the columns are {list(CSV_COLUMNS)}"
        )
    duplicated = sorted({column for column in columns if columns.count(column) > 1})
    if duplicated:
        raise JobsError(f"JOBS {path}, line {header_line}: columns given twice: {duplicated}")
    if "input" not in columns:
        raise JobsError(f"JOBS {path}, line {header_line}: no 'input' column (the video, frame folder or dataset)")
    clips = []
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue  # a blank row
        if len(row) > len(columns):
            raise JobsError(f"JOBS {path}, line {line}: {len(row)} values for {len(columns)} columns")
        cells = {column: cell.strip() for column, cell in zip(columns, row) if cell.strip()}
        clips.append(_csv_clip(path, line, cells, methods))
    return clips


def _csv_path(csv_path: Path, where: str, column: str, value: str) -> Path:
    path = _absolute(csv_path.parent / value)  # an absolute value stays as it is
    if not path.exists():
        raise JobsError(f"{where}: {column} {value!r}: no such file or folder ({path})")
    return path


def _csv_clip(path: Path, line: int, cells: Dict[str, str], methods: Collection[str]) -> ClipJob:
    where = f"JOBS {path}, line {line}"
    if "input" not in cells:
        raise JobsError(f"{where}: 'input' is empty; give the video, frame folder or dataset")
    source = _csv_path(path, where, "input", cells["input"])
    kind = clip_kind(source)
    if kind is None:
        what = "a file but not a video" if source.is_file() else "a folder without images or " + TRANSFORMS_NAME
        raise JobsError(
            f"{where}: input {cells['input']!r} is {what}; give a video ({', '.join(VIDEO_SUFFIXES)}), a folder of "
            "images or a dataset folder"
        )
    method = cells.get("method")
    if method is not None and method not in methods:
        raise JobsError(f"{where}: method {method!r} is not a ds4d method; choose one of {sorted(methods)}")
    process: Dict[str, Any] = {}
    for column in PROCESS_COLUMNS:
        if column not in cells:
            continue
        if kind == "dataset":
            raise JobsError(
                f"{where}: {column} is a ds4d-process option, but {cells['input']!r} is a ready dataset; leave it empty"
            )
        process[column] = _process_value(path, where, column, cells[column])
    if ("pseudo_views" in process) != ("pseudo_release" in process):
        raise JobsError(f"{where}: pseudo_views and pseudo_release go together (the release that made the views)")
    default_name = source.stem if kind == "video" else source.name
    name = _check_name(cells.get("name", default_name), where)
    return ClipJob(name, source, kind, f"{path.name} line {line}", method, process)


def _process_value(csv_path: Path, where: str, column: str, value: str) -> Any:
    if column in ("num_frames", "resolution"):
        if not value.isdigit() or int(value) < 1:
            raise JobsError(f"{where}: {column} {value!r} is not a positive whole number")
        return int(value)
    if column == "matting":
        if value not in MATTING_CHOICES:
            raise JobsError(f"{where}: matting {value!r}; choose one of {list(MATTING_CHOICES)}")
        return value
    if column == "pseudo_release":
        if value not in RELEASE_CHOICES:
            raise JobsError(f"{where}: pseudo_release {value!r}; choose one of {list(RELEASE_CHOICES)}")
        return value
    folder = _csv_path(csv_path, where, column, value)  # masks, pseudo_views
    if not folder.is_dir():
        raise JobsError(f"{where}: {column} {value!r} is not a folder")
    return folder
