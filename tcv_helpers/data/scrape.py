"""Polite, robust, resumable collection of snapshots from public camera URLs.

Transport departments publish traffic-camera stills as JPEG files that refresh every few seconds
or minutes (wildfire cameras do the same). :func:`scrape` fetches a list of such URLs a number of
times and keeps only the responses that are real, new frames::

    from tcv_helpers.data.scrape import load_cameras, scrape

    report = scrape(load_cameras("cameras.yaml"), "workspace/scraped", rounds=3, interval=60)
    print(report.summary())

What it does for every camera and round, in order (the HTTP part, steps 1 to 5, is
:mod:`tcv_helpers.data.scrape_http`):

1. checks the host's ``robots.txt`` (fetched once per host and run);
2. waits for its turn at the host: one request at a time per host (across all threads), each
   starting at least ``per_host_delay`` seconds after the previous one to that host ended;
3. asks for the image with ``If-None-Match`` / ``If-Modified-Since`` when the last response
   carried an ``ETag`` / ``Last-Modified`` (``304 Not Modified`` costs the publisher nothing);
4. retries timeouts, dropped connections, 5xx and 429 a few times with exponential backoff
   (honouring a short ``Retry-After``); other 4xx are final;
5. follows a redirect by hand (at most five), each hop paced and checked like the first
   request: the target host's ``robots.txt``, and no loopback, private or link-local address
   the camera list does not name (``redirect_refused``); then streams the body and stops at
   ``max_bytes``;
6. decodes the bytes fully (:func:`tcv_helpers.imaging.decode_image`) and skips placeholders
   and frames that did not change since the camera's last saved frame;
7. saves the frame atomically as ``OUT/<camera id>/<UTC time>.jpg`` and appends one row to
   ``OUT/manifest.csv``.

Every fetch of a camera in a round is one manifest row, whatever happened (retries inside one
fetch are folded into its row). A camera whose publisher's terms do not allow automated fetching
is marked ``fetch: false`` in the camera list: it is never requested (not even its host's
``robots.txt``), and each run writes one ``terms_disallowed`` row for it, so the manifest still
says what was left out and why. The columns (:data:`MANIFEST_COLUMNS`): ``image`` (path relative
to the output folder, empty when nothing was saved), ``camera_id``, ``timestamp`` (UTC, ISO 8601),
``source`` (the publisher), ``condition`` (``unknown``: for later labelling), ``split`` (empty),
``url``, ``outcome`` (one of :data:`OUTCOMES`), ``http_status``, ``bytes`` (body size, or the
size declared or read so far for ``too_large``), ``sha256`` and ``phash`` (of a decoded image),
and ``error`` (what went wrong, or why a frame was skipped).

The run can be killed at any moment and started again on the same folder: it removes temporary
files left behind (``.*.tmp`` in the folder and its subfolders), drops a half-written last
manifest line, adds rows for frames saved just before the kill, and reloads each camera's last
frame (from the manifest) and its ``ETag`` / ``Last-Modified`` (from ``OUT/scrape_state.json``).

"Camera offline" placeholders are recognised two ways: a (nearly) uniform image
(:func:`tcv_helpers.imaging.is_blank`), or an image whose perceptual hash is exactly one already
seen from another camera (in this run or in the manifest of earlier runs): real scenes from two
cameras never hash alike, but the "temporarily unavailable" card of one publisher does. The
first camera to show such a card cannot know it yet, so its copy is kept; every later copy, from
any camera, is a placeholder. Two camera ids that point at the same video feed are therefore
reported as placeholders too: list each feed once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import imagehash
import requests
from requests.adapters import HTTPAdapter
from tqdm.auto import tqdm

from tcv_helpers.data.labels import MANIFEST_COLUMNS as BASE_MANIFEST_COLUMNS
from tcv_helpers.data.scrape_http import (
    FetchOptions,
    FetchResult,
    HostPacer,
    RedirectCheck,
    RobotsRules,
    download,
    utc_now,
)
from tcv_helpers.imaging import (
    SUFFIX_TYPES,
    ImageError,
    decode_image,
    is_blank,
    is_near_duplicate,
    perceptual_hash,
    sniff_type,
)
from tcv_helpers.io import (
    atomic_write_bytes,
    atomic_write_json,
    exclusive_lock,
    read_yaml_mapping,
)
from tcv_helpers.secrets import redact_url

if TYPE_CHECKING:
    import pandas as pd

#: Sent with every request: names the project and where to reach its maintainers.
DEFAULT_USER_AGENT = (
    "traffic-cams-cv/0.1 (course scraper; +https://github.com/traffic-cams-cv/traffic-cams-cv)"
)
#: The manifest file inside the output folder.
MANIFEST_NAME = "manifest.csv"
#: The small state file (``ETag`` / ``Last-Modified`` per camera) inside the output folder.
STATE_NAME = "scrape_state.json"
#: The lock file that keeps a second scrape out of a folder while one runs.
LOCK_NAME = ".scrape.lock"
#: Manifest columns: the dataset columns first (shared with the other manifests of the course),
#: then what the scraper knows about the fetch.
MANIFEST_COLUMNS = (
    *BASE_MANIFEST_COLUMNS,
    "url",
    "outcome",
    "http_status",
    "bytes",
    "sha256",
    "phash",
    "error",
)
#: Every value of the manifest's ``outcome`` column.
OUTCOMES = (
    "saved",
    "not_modified",
    "duplicate",
    "near_duplicate",
    "placeholder",
    "not_image",
    "bad_image",
    "too_large",
    "http_error",
    "timeout",
    "connection_error",
    "robots_disallowed",
    "redirect_refused",
    "terms_disallowed",
)
#: Outcomes whose response was a decodable image (its validators and hash are remembered).
IMAGE_OUTCOMES = frozenset({"saved", "duplicate", "near_duplicate", "placeholder"})
#: Outcomes of cameras that were listed but never requested (not counted as fetches).
NOT_FETCHED_OUTCOMES = frozenset({"terms_disallowed"})
#: The ``error`` cell of a camera marked ``fetch: false``.
TERMS_DISALLOW_REASON = (
    "terms do not allow automated fetching (fetch: false in the camera list); never requested"
)
#: Allowed camera ids: lower-case letters, digits, ``-`` and ``_`` (they become folder names).
CAMERA_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: Keys a camera entry of the YAML list may have.
CAMERA_KEYS = ("id", "url", "name", "source", "license", "interval", "fetch")
#: A perceptual hash seen from this many different cameras marks a "camera offline" card.
PLACEHOLDER_MIN_CAMERAS = 2
#: File-name timestamp of a saved frame (UTC).
FILE_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
#: Manifest timestamp (ISO 8601, UTC).
MANIFEST_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_TYPE_SUFFIXES = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp", "webp": ".webp"}
_STATE_VERSION = 1


@dataclass(frozen=True)
class Camera:
    """One public camera that publishes a refreshing snapshot.

    Attributes:
        id: Unique id, used in file names and the manifest (``[a-z0-9_-]``, at most 64).
        url: The snapshot's ``http``/``https`` URL.
        name: Human-readable name (for example ``"I-5 at Main St"``).
        source: Who publishes it; goes to the manifest's ``source`` column.
        license: Terms of use of the images.
        interval: Seconds between fetches of this camera; None uses the run's interval.
        fetch: False when the publisher's terms do not allow automated fetching: the camera
            is listed (in the manifest too) but never requested.

    Raises:
        ValueError: If the id, URL, interval or fetch flag is invalid (the message names the
            field).
    """

    id: str
    url: str
    name: str = ""
    source: str = ""
    license: str = ""
    interval: float | None = None
    fetch: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not CAMERA_ID_PATTERN.fullmatch(self.id):
            raise ValueError(
                f"field 'id': {self.id!r} is not a valid camera id (use 1 to 64 lower-case "
                "letters, digits, '-' or '_', starting with a letter or digit)"
            )
        if not isinstance(self.url, str):
            raise ValueError(f"field 'url': expected a string, got {type(self.url).__name__}")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"field 'url': {self.url!r} is not an http:// or https:// URL")
        for name in ("name", "source", "license"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"field {name!r}: expected a string")
        if self.interval is not None:
            value = self.interval
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"field 'interval': {value!r} is not a number of seconds")
            if not value > 0 or value == float("inf"):
                raise ValueError(f"field 'interval': {value!r} must be a positive number")
        if not isinstance(self.fetch, bool):
            raise ValueError(f"field 'fetch': {self.fetch!r} must be true or false")


def load_cameras(path: str | os.PathLike) -> list[Camera]:
    """Reads and checks a camera list (YAML with a ``cameras:`` list).

    Each entry has ``id`` and ``url`` and optionally ``name``, ``source``, ``license``,
    ``interval`` (seconds) and ``fetch`` (``false`` where the terms do not allow automated
    fetching); other keys are refused, so a typo does not go unnoticed.

    Args:
        path: The YAML file.

    Returns:
        The cameras, in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the YAML is malformed (with its line) or an entry is invalid; the message
            names the file, the entry's position and id, and the field.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Camera list {str(file)!r} does not exist.")
    data = read_yaml_mapping(
        file, what="Camera list", holds="a mapping with a 'cameras:' list at the top level"
    )
    if "cameras" not in data:
        raise ValueError(f"{file}: expected a mapping with a 'cameras:' list at the top level.")
    entries = data["cameras"]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{file}: 'cameras' must be a non-empty list of camera entries.")
    cameras: list[Camera] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        label = f"{file}: camera #{index}"
        if not isinstance(entry, dict):
            raise ValueError(
                f"{label}: expected a mapping with 'id' and 'url', got {type(entry).__name__}."
            )
        if isinstance(entry.get("id"), str):
            label += f" ({entry['id']!r})"
        unknown = sorted(str(key) for key in entry if key not in CAMERA_KEYS)
        if unknown:
            raise ValueError(
                f"{label}: unknown field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(CAMERA_KEYS)}."
            )
        for required in ("id", "url"):
            if entry.get(required) in (None, ""):
                raise ValueError(f"{label}: field {required!r} is missing.")
        try:
            camera = Camera(
                id=entry["id"],
                url=entry["url"],
                name=entry.get("name") or "",
                source=entry.get("source") or "",
                license=entry.get("license") or "",
                interval=entry.get("interval"),
                fetch=entry.get("fetch", True),
            )
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}.") from None
        if camera.id in seen:
            raise ValueError(
                f"{label}: field 'id': {camera.id!r} is already used by camera #{seen[camera.id]}."
            )
        seen[camera.id] = index
        cameras.append(camera)
    return cameras


@dataclass
class ScrapeReport:
    """What one :func:`scrape` run did.

    Attributes:
        out: The output folder.
        manifest: The manifest file (rows of all runs so far).
        counts: Number of fetches per outcome in this run (every outcome present, maybe 0).
        saved: Frames saved in this run (not those recovered from an interrupted run).
        rows: The manifest rows written in this run (rows of recovered frames included).
        notes: What was repaired when resuming (temporary files removed, a partial manifest
            line dropped, frames of an interrupted run recovered).
    """

    out: Path
    manifest: Path
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    saved: list[Path] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fetches(self) -> int:
        """Number of fetches in this run (:attr:`counts` without cameras never requested)."""
        return sum(n for name, n in self.counts.items() if name not in NOT_FETCHED_OUTCOMES)

    def summary(self) -> str:
        """One line for the console: fetches, frames saved and the non-zero outcomes."""
        parts = [f"{name}={count}" for name, count in self.counts.items() if count]
        return (
            f"{self.fetches} fetches, {len(self.saved)} frames saved in {self.out} "
            f"({', '.join(parts) or 'nothing fetched'})"
        )

    def to_pandas(self) -> pd.DataFrame:
        """This run's manifest rows as a DataFrame (columns :data:`MANIFEST_COLUMNS`).

        Returns:
            One row per fetch; numbers stay strings as in the CSV (empty where unknown).
        """
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(MANIFEST_COLUMNS))


# --------------------------------------------------------------------------------------------
# Manifest and state files
# --------------------------------------------------------------------------------------------


def _one_line(value: Any) -> str:
    """A manifest cell: text on one line, so that every row is exactly one line."""
    return " ".join(str(value if value is not None else "").splitlines())


def _format_row(row: Mapping[str, Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        [_one_line(row.get(column, "")) for column in MANIFEST_COLUMNS]
    )
    return buffer.getvalue().encode("utf-8")


def _append_durably(path: Path, data: bytes) -> None:
    """Appends bytes with one write, then fsyncs: a kill leaves a line whole or (rarely) cut."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare_manifest(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Reads the manifest (creating it with its header), dropping a partial last line.

    Returns:
        The rows and notes on what was repaired.

    Raises:
        ValueError: If the file has other columns or a malformed row.
    """
    header = _format_row({column: column for column in MANIFEST_COLUMNS})
    notes: list[str] = []
    data = path.read_bytes() if path.is_file() else b""
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        notes.append(f"dropped a partial last line ({len(data) - keep} bytes) of {path}")
        data = data[:keep]
    if not data:
        path.parent.mkdir(parents=True, exist_ok=True)
        _append_durably(path, header)
        return [], notes
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    columns = next(reader)
    if tuple(columns) != MANIFEST_COLUMNS:
        raise ValueError(
            f"{path}: has columns {', '.join(columns)}; expected {', '.join(MANIFEST_COLUMNS)}. "
            "Use a new output folder, or move the old manifest away."
        )
    rows = []
    for number, cells in enumerate(reader, start=2):
        if len(cells) != len(MANIFEST_COLUMNS):
            raise ValueError(
                f"{path}:{number}: expected {len(MANIFEST_COLUMNS)} values, got {len(cells)}."
            )
        rows.append(dict(zip(MANIFEST_COLUMNS, cells, strict=True)))
    return rows, notes


def _remove_stale_temporaries(out: Path) -> list[str]:
    """Removes ``.*.tmp`` files that an atomic write killed half-way left behind."""
    notes = []
    for folder in [out, *(p for p in out.iterdir() if p.is_dir())]:
        for stale in folder.glob(".*.tmp"):
            if stale.is_file():
                stale.unlink()
                notes.append(f"removed {stale} left by an interrupted write")
    return notes


def _read_state(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The ``ETag`` / ``Last-Modified`` per camera; an unreadable file is ignored with a note."""
    if not path.is_file():
        return {}, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cameras = data["cameras"]
        if data.get("version") != _STATE_VERSION or not isinstance(cameras, dict):
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        clean = {
            str(cid): {k: str(v) for k, v in entry.items() if isinstance(v, str)}
            for cid, entry in cameras.items()
            if isinstance(entry, dict)
        }
    except (ValueError, KeyError, TypeError) as exc:
        return {}, [f"ignored unreadable {path} ({exc}); images are downloaded again once"]
    return clean, []


# --------------------------------------------------------------------------------------------
# Deciding and recording
# --------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    """A decoded response: its hashes and whether it is blank."""

    sha256: str
    phash: imagehash.ImageHash
    blank: bool
    suffix: str


def _analyse(body: bytes) -> tuple[_Frame | None, str, str]:
    """Decodes a body: ``(frame, "", "")`` or ``(None, outcome, reason)``."""
    try:
        image = decode_image(body)
    except ImageError as exc:
        outcome = "not_image" if sniff_type(body) is None else "bad_image"
        return None, outcome, str(exc)
    kind = sniff_type(body) or "jpeg"
    frame = _Frame(
        sha256=hashlib.sha256(body).hexdigest(),
        phash=perceptual_hash(image),
        blank=is_blank(image),
        suffix=_TYPE_SUFFIXES.get(kind, ".jpg"),
    )
    return frame, "", ""


class _Store:
    """The output folder: manifest, state file, saved frames and each camera's last frame.

    All decisions that compare frames and all writes happen under one lock; downloads and
    decoding happen outside it, in parallel.
    """

    def __init__(self, out: Path, cameras: Sequence[Camera], report: ScrapeReport) -> None:
        self.out = out
        self.manifest = out / MANIFEST_NAME
        self.state_file = out / STATE_NAME
        self.report = report
        self._lock = threading.Lock()
        self._cameras = {camera.id: camera for camera in cameras}
        #: Each camera's URL as written down: no password or key (redacted once, not per row).
        self._public_urls = {camera.id: redact_url(camera.url) for camera in cameras}
        self._last: dict[str, tuple[str, imagehash.ImageHash | None]] = {}
        self._hash_cameras: dict[str, set[str]] = {}
        report.notes.extend(_remove_stale_temporaries(out))
        rows, notes = _prepare_manifest(self.manifest)
        report.notes.extend(notes)
        for row in rows:
            self._remember(row)
        self._recover_orphans({row["image"] for row in rows if row["image"]})
        self._validators, notes = _read_state(self.state_file)
        report.notes.extend(notes)
        for cid in list(self._validators):
            camera = self._cameras.get(cid)
            if camera is not None and self._validators[cid].get("url") != self._public_urls[cid]:
                del self._validators[cid]  # the URL changed: its validators mean nothing now

    def _remember(self, row: Mapping[str, str]) -> None:
        """Updates the last frame of a camera and the cross-camera hashes from a row."""
        if row["outcome"] not in ("saved", "placeholder") or not row["phash"]:
            return
        try:
            phash = imagehash.hex_to_hash(row["phash"])
        except ValueError:
            phash = None
        self._hash_cameras.setdefault(row["phash"], set()).add(row["camera_id"])
        if row["outcome"] == "saved":
            self._last[row["camera_id"]] = (row["sha256"], phash)

    def _recover_orphans(self, known: set[str]) -> None:
        """Adds manifest rows for frames saved by a run killed before it wrote their row."""
        for cid, camera in self._cameras.items():
            folder = self.out / cid
            if not folder.is_dir():
                continue
            for file in sorted(folder.iterdir()):
                relative = file.relative_to(self.out).as_posix()
                if (
                    file.name.startswith(".")
                    or file.suffix.lower() not in SUFFIX_TYPES
                    or relative in known
                    or not file.is_file()
                ):
                    continue
                body = file.read_bytes()
                frame, _, reason = _analyse(body)
                if frame is None:
                    self.report.notes.append(f"left {file} alone: not a usable image ({reason})")
                    continue
                try:
                    stamp = datetime.strptime(file.stem[:16], FILE_TIME_FORMAT)
                    when = stamp.replace(tzinfo=timezone.utc)
                except ValueError:
                    when = datetime.fromtimestamp(file.stat().st_mtime, timezone.utc)
                row = self._row(camera, when, "saved", sha256=frame.sha256, phash=frame.phash)
                row.update(image=relative, bytes=str(len(body)))
                row["error"] = "recovered: saved by an interrupted run before its row was written"
                self._write_row(row)
                self._remember(row)
                self.report.notes.append(f"recovered {file} saved by an interrupted run")

    def conditional_headers(self, camera: Camera) -> dict[str, str]:
        with self._lock:
            known = self._validators.get(camera.id, {})
        headers = {}
        if known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
        return headers

    def _row(
        self,
        camera: Camera,
        when: datetime,
        outcome: str,
        *,
        status: int | None = None,
        nbytes: int | None = None,
        sha256: str = "",
        phash: imagehash.ImageHash | None = None,
        error: str = "",
    ) -> dict[str, str]:
        return {
            "image": "",
            "camera_id": camera.id,
            "timestamp": when.strftime(MANIFEST_TIME_FORMAT),
            "source": camera.source,
            "condition": "unknown",
            "split": "",
            "url": self._public_urls[camera.id],  # never a key or a password in the manifest
            "outcome": outcome,
            "http_status": "" if status is None else str(status),
            "bytes": "" if nbytes is None else str(nbytes),
            "sha256": sha256,
            "phash": "" if phash is None else str(phash),
            "error": error,
        }

    def _write_row(self, row: dict[str, str]) -> None:
        _append_durably(self.manifest, _format_row(row))
        self.report.rows.append(row)

    def _frame_path(self, camera: Camera, when: datetime, suffix: str) -> Path:
        stem = when.strftime(FILE_TIME_FORMAT)
        path = self.out / camera.id / f"{stem}{suffix}"
        number = 1
        while path.exists():
            path = self.out / camera.id / f"{stem}-{number}{suffix}"
            number += 1
        return path

    def _classify(self, camera: Camera, frame: _Frame) -> tuple[str, str]:
        if frame.blank:
            return "placeholder", "uniform image (camera offline?)"
        others = self._hash_cameras.get(str(frame.phash), set()) - {camera.id}
        if len(others) + 1 >= PLACEHOLDER_MIN_CAMERAS:
            names = ", ".join(sorted(others))
            return "placeholder", f"same perceptual hash as frames of camera(s) {names}"
        last_sha, last_hash = self._last.get(camera.id, ("", None))
        if frame.sha256 == last_sha:
            return "duplicate", ""
        if last_hash is not None and is_near_duplicate(frame.phash, last_hash):
            distance = frame.phash - last_hash
            return "near_duplicate", f"{distance} bits from the camera's last saved frame"
        return "saved", ""

    def skip(self, camera: Camera) -> dict[str, str]:
        """Records a camera that is never requested (``fetch: false``): one row per run."""
        with self._lock:
            row = self._row(camera, utc_now(), "terms_disallowed", error=TERMS_DISALLOW_REASON)
            self._write_row(row)
            self.report.counts[row["outcome"]] += 1
            return row

    def record(
        self, camera: Camera, fetch: FetchResult, frame: _Frame | None, when: datetime
    ) -> dict[str, str]:
        """Decides the outcome of a fetch, saves a new frame, appends its manifest row."""
        with self._lock:
            if frame is None:
                row = self._row(
                    camera,
                    when,
                    fetch.outcome or "bad_image",
                    status=fetch.status,
                    nbytes=fetch.nbytes,
                    error=fetch.error,
                )
            else:
                outcome, reason = self._classify(camera, frame)
                row = self._row(
                    camera,
                    when,
                    outcome,
                    status=fetch.status,
                    nbytes=fetch.nbytes,
                    sha256=frame.sha256,
                    phash=frame.phash,
                    error=reason,
                )
                if outcome == "saved":
                    assert fetch.body is not None
                    path = atomic_write_bytes(
                        self._frame_path(camera, when, frame.suffix), fetch.body
                    )
                    row["image"] = path.relative_to(self.out).as_posix()
                    self.report.saved.append(path)
            self._write_row(row)
            self._remember(row)
            self.report.counts[row["outcome"]] += 1
            validators = {
                "url": self._public_urls[camera.id],
                "etag": fetch.etag,
                "last_modified": fetch.last_modified,
            }
            if (
                (fetch.etag or fetch.last_modified)
                and (row["outcome"] in IMAGE_OUTCOMES or row["outcome"] == "not_modified")
                and self._validators.get(camera.id) != validators
            ):
                self._validators[camera.id] = validators
                atomic_write_json(
                    self.state_file, {"version": _STATE_VERSION, "cameras": self._validators}
                )
            return row


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    session: requests.Session
    options: FetchOptions
    pacer: HostPacer
    robots: RobotsRules
    store: _Store
    redirects: RedirectCheck


def _fetch_camera(camera: Camera, ctx: _Context) -> dict[str, str]:
    """One fetch of one camera: robots check, download, decode, record."""
    allowed, reason = ctx.robots.allowed(camera.url)
    if not allowed:
        return ctx.store.record(
            camera, FetchResult("robots_disallowed", error=reason), None, utc_now()
        )
    headers = {"User-Agent": ctx.options.user_agent, **ctx.store.conditional_headers(camera)}
    fetch = download(ctx.session, camera.url, headers, ctx.options, ctx.pacer, ctx.redirects)
    when = utc_now()
    frame = None
    if fetch.outcome is None:
        assert fetch.body is not None
        frame, outcome, reason = _analyse(fetch.body)
        if frame is None:
            fetch.outcome, fetch.error = outcome, reason
    return ctx.store.record(camera, fetch, frame, when)


def _check_arguments(cameras: Sequence[Camera], numbers: Mapping[str, tuple[float, float]]) -> None:
    for name, (value, minimum) in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ValueError(f"scrape(): {name}={value!r} must be a number >= {minimum:g}.")
    if not cameras:
        raise ValueError("scrape(): the camera list is empty.")
    strays = [type(camera).__name__ for camera in cameras if not isinstance(camera, Camera)]
    if strays:
        raise TypeError(f"scrape(): expected Camera objects, got {', '.join(sorted(set(strays)))}.")
    ids = Counter(camera.id for camera in cameras)
    repeated = sorted(cid for cid, count in ids.items() if count > 1)
    if repeated:
        raise ValueError(f"scrape(): camera id(s) used more than once: {', '.join(repeated)}.")


def scrape(
    cameras: Sequence[Camera] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    rounds: int = 1,
    interval: float = 60.0,
    user_agent: str = DEFAULT_USER_AGENT,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 1.0,
    max_bytes: int = 10_000_000,
    per_host_delay: float = 1.0,
    concurrency: int = 4,
    progress: bool = True,
    session: requests.Session | None = None,
) -> ScrapeReport:
    """Fetches every camera ``rounds`` times and keeps the new, valid frames.

    Cameras are fetched concurrently (one task per camera and round); a camera's next fetch
    starts ``interval`` seconds (or the camera's own ``interval``) after its previous one
    started. A camera with ``fetch=False`` is never requested: it gets one ``terms_disallowed``
    row per run instead. Requests to one host never overlap and stay ``per_host_delay`` seconds
    apart whatever the concurrency, and ``robots.txt`` is honoured (a 4xx ``robots.txt``
    allows everything; a 5xx one forbids the host for this run; an unreachable one forbids it
    until it can be read, asked again before each fetch, as RFC 9309 says). See the module
    docstring for the outcomes and how a killed run is resumed.

    Args:
        cameras: The cameras, or the path of a camera YAML file (see :func:`load_cameras`).
        out: Output folder; frames go to ``out/<camera id>/``, rows to ``out/manifest.csv``.
        rounds: Fetches per camera (at least 1).
        interval: Seconds between two fetches of a camera without its own ``interval``.
        user_agent: The User-Agent header; keep a contact address in it.
        timeout: Seconds to wait for a connection and for each read.
        retries: Extra tries after a timeout, connection error, 5xx or 429.
        backoff: Seconds before the first retry; doubled for each further retry.
        max_bytes: Largest response body; a larger one is dropped unsaved (``too_large``).
        per_host_delay: Least seconds between the end of one request to a host and the start
            of the next (requests to one host never overlap).
        concurrency: Threads fetching at the same time.
        progress: Show a tqdm progress bar.
        session: A ``requests.Session`` to use (for proxies, adapters, tests); by default a
            new one, closed at the end.

    Returns:
        The report: counts per outcome, saved frames and this run's manifest rows.

    Raises:
        ValueError: If an argument is out of range, camera ids repeat, the camera file is
            invalid, or ``out`` holds a manifest with other columns.
        TypeError: If ``cameras`` holds something other than :class:`Camera` objects.
        FolderBusy: If another scrape is writing into ``out`` (its lock file
            :data:`LOCK_NAME`): two would interleave the manifest.
        OSError: If the output folder cannot be written.
    """
    if not isinstance(cameras, Sequence) or isinstance(cameras, str):
        cameras = load_cameras(cameras)
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise ValueError(f"scrape(): rounds={rounds!r} must be a whole number >= 1.")
    _check_arguments(
        cameras,
        {
            "rounds": (rounds, 1),
            "interval": (interval, 0),
            "timeout": (timeout, 1e-3),
            "retries": (retries, 0),
            "backoff": (backoff, 0),
            "max_bytes": (max_bytes, 1),
            "per_host_delay": (per_host_delay, 0),
            "concurrency": (concurrency, 1),
        },
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / LOCK_NAME, what=f"tcv data scrape into {folder}"):
        report = ScrapeReport(out=folder, manifest=folder / MANIFEST_NAME)
        store = _Store(folder, cameras, report)
        own_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        options = FetchOptions(
            user_agent, float(timeout), int(retries), float(backoff), int(max_bytes)
        )
        pacer = HostPacer(float(per_host_delay))
        named = {urlsplit(camera.url).netloc for camera in cameras}
        robots = RobotsRules(session, pacer, options, named)
        ctx = _Context(session, options, pacer, robots, store, RedirectCheck(robots, named))
        for camera in cameras:
            if not camera.fetch:
                store.skip(camera)
        cameras = [camera for camera in cameras if camera.fetch]
        gaps = {c.id: (c.interval if c.interval is not None else float(interval)) for c in cameras}
        remaining = dict.fromkeys(gaps, rounds)
        due = dict.fromkeys(gaps, time.monotonic())
        running: dict[Future[dict[str, str]], Camera] = {}
        bar = tqdm(total=rounds * len(cameras), desc="scrape", unit="fetch", disable=not progress)
        executor = ThreadPoolExecutor(max_workers=int(concurrency), thread_name_prefix="tcv-scrape")
        try:
            while running or any(remaining.values()):
                now = time.monotonic()
                busy = {camera.id for camera in running.values()}
                for camera in cameras:
                    if remaining[camera.id] and camera.id not in busy and due[camera.id] <= now:
                        remaining[camera.id] -= 1
                        due[camera.id] = now + gaps[camera.id]
                        running[executor.submit(_fetch_camera, camera, ctx)] = camera
                        busy.add(camera.id)
                waiting = [due[c.id] for c in cameras if remaining[c.id] and c.id not in busy]
                pause = max(0.0, min(waiting) - time.monotonic()) if waiting else None
                if running:
                    done, _ = wait(list(running), timeout=pause, return_when=FIRST_COMPLETED)
                    for future in done:
                        running.pop(future)
                        future.result()
                        bar.update(1)
                        bar.set_postfix(saved=report.counts["saved"], refresh=False)
                elif pause:
                    time.sleep(pause)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if own_session:
                session.close()
    return report
