"""Attaching media to a CVAT task (reference/cvat-api.md §6.2) without holding files in memory.

Protocol: ``Upload-Start``; the files in ``Upload-Multiple`` batches of at most ~100 MiB
(multipart ``client_files[i]`` + ``image_quality``); each file over the batch limit through TUS
(10 MiB ``PATCH`` chunks, resumable from the server's ``Upload-Offset``); then ``Upload-Finish``
with the task parameters (``upload_file_order`` keeps our order with ``predefined`` sorting).

Bodies are streamed from disk: ``MultipartStream`` knows its length up front (so the request
carries a Content-Length, not chunked encoding) and opens one file at a time, so a 30 000-image
task never has more files open than requests in flight (FiftyOne's "Too many open files",
anchors §3 #15). ``send_batches`` can keep several batches of ~8 MiB in flight at once.
"""
from __future__ import annotations

import base64
import mimetypes
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .. import fingerprint
from ..media_metadata import hash_bytes, hash_value, media_mime, new_hasher
from .errors import CVATError

BATCH_BYTES = 100 * 1024 * 1024   # the official SDK's limit per Upload-Multiple request
TUS_CHUNK_BYTES = 10 * 1024 * 1024
READ_BLOCK = 1024 * 1024
# Upload-Multiple requests in flight at once (CVATClient.upload_parallel). With 2 the server
# saves and checks one ~8 MiB batch while the next arrives, instead of starting after the last
# byte of one 100 MiB request: 1000 JPEGs to fakecvat serve on 2 cores, 0.37-0.44 -> 0.33-0.36 s
# (5 x 4 runs, alternated); 3 or 4 in flight gained nothing more there, nor did 4 or 16 MiB
# batches. (When fakecvat parsed multipart bodies with werkzeug, holding the GIL, 2-4 in flight
# were slower: 0.88 vs 0.80 s.) CVAT stores each Upload-Multiple request's files as it comes
# and takes their order from Upload-Finish, so batches may arrive in any order.
PARALLEL = 2
PART_BYTES = 8 * 1024 * 1024      # batch size when several are in flight

Progress = Callable[[int, int], None]


class _Counter:
    """Bytes of file content sent so far, shared by all streams of one upload (several batches
    may be in flight at once, hence the lock)."""

    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            done = self.done
        if self.progress and n:
            self.progress(max(0, min(done, self.total)), self.total)


class MultipartStream:
    """A ``multipart/form-data`` body produced lazily: fields, then files streamed from disk.

    It is an iterable with a length, not a file: ``requests`` then sends it with a
    Content-Length, and urllib3 hands each chunk we yield to one ``sendall``. A file object
    would be read in urllib3's 16 KiB blocks (2700 reads and sends for 43 MB, each copying);
    here a small file goes out as one piece (its part header, bytes and CRLF together), a big
    one in 1 MiB blocks.
    """

    def __init__(self, fields: Sequence[tuple[str, str]], files: Sequence[tuple],
                 counter: _Counter | None = None, digests: dict | None = None):
        """``files``: ``(field name, file name, path)`` or ``(field name, file name, path, size)``
        (a known size saves a stat). ``digests``: filled with {path: (content hash, stat
        fingerprint or None)} of the bytes each file sent (the upload reads them anyway; a
        separate hashing pass read them again and, in threads, slowed the upload by ~15 %
        through GIL hand-offs). The fingerprint (``syncd.fingerprint``) comes from an
        ``fstat`` before and after the read."""
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._parts: list[tuple[bytes, Path | bytes, int]] = []
        for name, value in fields:
            data = str(value).encode()
            self._parts.append((self._head(name), data, len(data)))
        for item in files:
            name, filename, path = item[:3]
            size = item[3] if len(item) > 3 else Path(path).stat().st_size
            ctype = content_type(filename) or "application/octet-stream"
            self._parts.append((self._head(name, filename, ctype), path, size))
        self._tail = f"--{self.boundary}--\r\n".encode()
        self._length = len(self._tail) + sum(len(head) + size + 2 for head, _, size in self._parts)
        self._counter = counter
        self._digests = digests

    def _head(self, name: str, filename: str | None = None, ctype: str | None = None) -> bytes:
        disp = f'form-data; name="{_quote(name)}"'
        if filename is not None:
            disp += f'; filename="{_quote(filename)}"'
        lines = [f"--{self.boundary}", f"Content-Disposition: {disp}"]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def __iter__(self):
        for head, src, size in self._parts:
            if isinstance(src, bytes):
                yield head + src + b"\r\n"
                continue
            with open(src, "rb") as fh:  # one open file at a time
                before = os.fstat(fh.fileno()) if self._digests is not None else None
                if size <= READ_BLOCK:
                    data = fh.read(size + 1)  # (a 1 MiB request would allocate 1 MiB per file)
                    if len(data) != size:
                        raise CVATError(f"{src} changed size while being uploaded ({size} -> {len(data)} bytes)")
                    self._count(len(data))
                    if before is not None:
                        self._digests[src] = (hash_bytes(data), fingerprint.settled(before, os.fstat(fh.fileno())))
                    yield b"".join((head, data, b"\r\n"))
                    continue
                yield head
                sent = 0
                digest = new_hasher() if self._digests is not None else None
                while block := fh.read(READ_BLOCK):
                    sent += len(block)
                    self._count(len(block))
                    if digest is not None:
                        digest.update(block)
                    yield block
                if sent != size:
                    raise CVATError(f"{src} changed size while being uploaded ({size} -> {sent} bytes)")
                if digest is not None:
                    self._digests[src] = (hash_value(digest), fingerprint.settled(before, os.fstat(fh.fileno())))
            yield b"\r\n"
        yield self._tail

    def _count(self, n: int) -> None:
        if self._counter:
            self._counter.add(n)

    def __len__(self) -> int:
        return self._length

    # No read(): urllib3 would then send the body in 16 KiB blocks (see the class note).


def _quote(value: str) -> str:
    # the HTML5 form encoding browsers use: quotes and newlines percent-escaped, UTF-8 kept
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def content_type(filename: str) -> str | None:
    """A file's Content-Type: syncd's own table for media (see ``media_mime``), else what
    ``mimetypes`` guesses (an annotation or backup archive...)."""
    return media_mime(filename) or mimetypes.guess_type(filename)[0]


def plan_batches(files: Sequence[tuple[str, Path, int]], limit: int) -> tuple[list[list], list]:
    """Split (name, path, size) items, in order, into multipart batches of at most ``limit``
    bytes, and the list of files too big for any batch (they go through TUS)."""
    batches: list[list] = []
    big: list = []
    current: list = []
    used = 0
    for item in files:
        size = item[2]
        if size > limit:
            big.append(item)
            continue
        if current and used + size > limit:
            batches.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        batches.append(current)
    return batches, big


def normalize_files(files: Iterable[Path | str | tuple[str, Path | str]]) -> list[tuple[str, str, int]]:
    """(name CVAT will see, local path, size) per file; names must be unique because CVAT keeps
    uploads in one directory and appends to a file of the same name. Plain ``os`` calls on
    strings: building Path objects was most of the ~50 ms this took for 1000 files."""
    out, seen = [], set()
    for f in files:
        if isinstance(f, tuple):
            name, path = f[0], os.fspath(f[1])
        else:
            path = os.fspath(f)
            name = os.path.basename(path)
        if name in seen:
            raise CVATError(f"two files would be uploaded as {name!r}; give unique names as (name, path) pairs")
        seen.add(name)
        try:
            size = os.stat(path).st_size
        except OSError as e:
            raise CVATError(f"cannot upload {path}: {e.strerror or e}") from None
        out.append((name, path, size))
    return out


def upload_data(t, tid: int, files, *, image_quality: int = 75, sorting_method: str = "predefined",
                server_files: list[str] | None = None, chunk_size: int | None = None,
                start_frame: int | None = None, stop_frame: int | None = None,
                frame_step: int | None = None, use_cache: bool = True, progress: Progress | None = None,
                batch_bytes: int = BATCH_BYTES, tus_chunk_bytes: int = TUS_CHUNK_BYTES,
                parallel: int = 1, digests: dict | None = None) -> str:
    """Attach ``files`` (or ``server_files``) to task ``tid``; return the request id to wait on
    ("" for servers older than 2.16 that answer without one). ``parallel``: Upload-Multiple
    requests in flight at once (see ``send_batches``). ``digests``: filled with {path: (content
    hash, stat fingerprint or None)} of what each file sent in a multipart batch (files big enough
    for TUS are not hashed)."""
    url = f"/api/tasks/{tid}/data/"
    params: dict = {"image_quality": int(image_quality), "sorting_method": sorting_method, "use_cache": use_cache}
    for key, value in (("chunk_size", chunk_size), ("start_frame", start_frame), ("stop_frame", stop_frame)):
        if value is not None:
            params[key] = value
    if frame_step is not None and frame_step > 1:
        params["frame_filter"] = f"step={int(frame_step)}"
    items = normalize_files(files or [])
    if server_files:
        if items:
            raise CVATError("give either local files or server_files, not both")
        params["server_files"] = list(server_files)
        # one JSON request: nothing is uploaded, CVAT reads the share (zero copy)
        return _rq_id(t.call("POST", url, json=params, idempotent=False))
    if not items:
        raise CVATError(f"no files to upload to task {tid}")
    counter = _Counter(sum(size for _, _, size in items), progress)
    t.request("POST", url, headers={"Upload-Start": "true"}, json={}, expect=(200, 201, 202), idempotent=True)
    batches, big = plan_batches(items, batch_bytes)
    send_batches(t, url, batches, [("image_quality", str(int(image_quality)))], counter, parallel=parallel,
                 digests=digests)
    for name, path, size in big:
        _tus_upload(t, url, name, path, size, counter, tus_chunk_bytes)
    if sorting_method == "predefined":
        params["upload_file_order"] = [name for name, _, _ in items]
    return _rq_id(t.call("POST", url, headers={"Upload-Finish": "true"}, json=params, idempotent=False))


def _rq_id(answer) -> str:
    return str(answer.get("rq_id") or "") if isinstance(answer, dict) else ""


def send_batches(t, url: str, batches: list[list], fields, counter: _Counter | None = None, *,
                 parallel: int = 1, part_bytes: int = PART_BYTES, digests: dict | None = None) -> None:
    """POST each batch of (name, path, size) as one ``Upload-Multiple`` multipart request.

    With ``parallel`` > 1, batches are first cut to about ``part_bytes`` and up to ``parallel``
    requests are in flight at once: the server parses, saves and checks one batch while the
    next arrives, instead of everything after the last byte (a server with several workers,
    like CVAT, or a threaded fakecvat, works on them side by side). File order does not depend
    on arrival: ``Upload-Finish`` names it (``upload_file_order``). The first failure is
    raised once the requests already in flight have ended; no further batch is started.
    """
    counter = counter or _Counter(0, None)
    if parallel > 1:
        batches = [part for batch in batches for part in _cut(batch, part_bytes)]
    if parallel <= 1 or len(batches) <= 1:
        for batch in batches:
            _send_batch(t, url, batch, fields, counter, digests)
        return
    pool = ThreadPoolExecutor(max_workers=min(parallel, len(batches)), thread_name_prefix="syncd-upload")
    try:
        futures = [pool.submit(_send_batch, t, url, batch, fields, counter, digests) for batch in batches]
        for future in futures:
            future.result()  # the first error (in batch order) ends the upload
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _cut(batch: list, part_bytes: int) -> list[list]:
    """A batch split, in order, into parts of about ``part_bytes`` (at least one file each)."""
    parts, current, used = [], [], 0
    for item in batch:
        if current and used + item[2] > part_bytes:
            parts.append(current)
            current, used = [], 0
        current.append(item)
        used += item[2]
    return parts + ([current] if current else [])


class _BatchCounter:
    """What one batch has added to the upload's count, so a retry can take it back."""

    def __init__(self, counter: _Counter):
        self.counter, self.sent = counter, 0

    def add(self, n: int) -> None:
        self.sent += n
        self.counter.add(n)

    def rewind(self) -> None:
        if self.sent:
            self.counter.add(-self.sent)
            self.sent = 0


def _send_batch(t, url: str, batch, fields, counter: _Counter, digests: dict | None = None) -> None:
    mine = _BatchCounter(counter)

    def factory():
        # a retry re-sends the whole batch: take back its progress, re-open the files
        mine.rewind()
        stream = MultipartStream(fields, [(f"client_files[{i}]", name, path, size)
                                          for i, (name, path, size) in enumerate(batch)], mine, digests)
        return {"data": stream, "headers": {"Content-Type": stream.content_type}}

    # Not idempotent: CVAT appends uploads to files of the same name, so a batch is re-sent only
    # when it certainly did not arrive (connection refused, 429/503).
    t.request("POST", url, headers={"Upload-Multiple": "true"}, body_factory=factory, idempotent=False)


def _tus_upload(t, url: str, name: str, path: Path, size: int, counter: _Counter, chunk: int) -> None:
    meta = "filename " + base64.b64encode(name.encode()).decode()
    ctype = content_type(name)
    if ctype:
        meta += ",filetype " + base64.b64encode(ctype.encode()).decode()
    resp = t.request("POST", url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(size),
                                          "Upload-Metadata": meta}, json={}, idempotent=False)
    location = resp.headers.get("Location")
    if not location:
        raise CVATError(f"CVAT POST {url} (TUS create for {name}) answered without a Location header")
    offset, errors = 0, 0
    base_done = counter.done
    with open(path, "rb") as fh:
        while offset < size:
            fh.seek(offset)
            data = fh.read(min(chunk, size - offset))
            try:
                r = t.request("PATCH", location, data=data, idempotent=True, retries=0,
                              headers={"Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                                       "Content-Type": "application/offset+octet-stream"})
                new = int(r.headers.get("Upload-Offset", offset + len(data)))
            except CVATError as e:
                # resumable: ask the server how much it has and continue from there
                errors += 1
                if errors > max(3, t.retries) or (e.status is not None and e.status < 500 and e.status != 409):
                    raise
                head = t.request("HEAD", location, headers={"Tus-Resumable": "1.0.0"})
                new = int(head.headers.get("Upload-Offset", offset))
            counter.add(new - offset)
            offset = new
    counter.done = base_done + size
