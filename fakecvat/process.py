"""``fakecvat serve`` in a child process, for tests and benchmarks that want a real server
outside their own interpreter (own GIL, measurable memory, killable with SIGKILL).

    from fakecvat import FakeCVATProcess
    with FakeCVATProcess(data_dir=tmp / "cvat") as cvat:     # admin:admin on a free port
        s = cvat.session()                                   # Basic auth, no CSRF dance
        s.post(cvat.url + "/api/tasks", json={"name": "t", "labels": [{"name": "cat"}]})
        cvat.kill()                                          # kill -9 ...
        cvat.start()                                         # ... and back on the same URL

Readiness is the line ``fakecvat VERSION serving on http://HOST:PORT`` that ``serve`` prints
on stderr once its socket listens; every stderr line (that one included) is appended to
``log_path``, one file across all lives of the process. The first life fixes the port (even
when it was 0 = "any free port"), so restarts keep ``url`` stable for clients that hold it.
Whatever temporary files a life makes (its media directory when there is no data dir, request
bodies waitress spills to disk) go to a directory of this object's (the child's ``TMPDIR``),
removed by :meth:`close`: a life ended by kill -9 cannot clean up after itself.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path

import requests

_SERVING = re.compile(rb"serving on (http://\S+)")
# where the ``fakecvat`` package this module belongs to lives: the child must import the same code
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def _reap(proc: subprocess.Popen) -> None:
    """Stop ``proc`` for good: SIGTERM (the server closes its store cleanly), then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _drain(pipe, log_path: Path, ready: threading.Event, found: list) -> None:
    """Copy the child's stderr into the log until EOF; note the first ``serving on`` URL.

    A plain function (not a method) so that the thread does not keep the owner alive."""
    with pipe, open(log_path, "ab") as log:
        for line in pipe:
            log.write(line)
            log.flush()  # a crash's traceback must be on disk when the caller looks
            if not found:
                m = _SERVING.search(line)
                if m:
                    found.append(m.group(1).decode())
                    ready.set()
    ready.set()  # EOF: the child is gone (start() tells the two apart by ``found``)


class FakeCVATProcess:
    """``python -m fakecvat serve`` in a subprocess, started by :meth:`start` (or ``with``).

    ``port``: 0 picks a free one on the first start; restarts reuse whatever port the first life
    got. ``users``: ``["name:password", ...]`` (the first is a superuser and is what
    :meth:`session` and :meth:`get` log in as); default admin:admin. ``log_path``: stderr of
    every life, appended; by default a temp file that :meth:`close` removes (unless kept).
    ``env``: the child's environment (default: ours, able to import this fakecvat).
    """

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", data_dir=None, share_dir=None,
                 threads: int = 8, users=None, log_path=None, cvat_version: str | None = None,
                 env: dict | None = None, media_dir=None):
        self.host, self.port = host, int(port)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.share_dir = Path(share_dir) if share_dir is not None else None
        self.media_dir = Path(media_dir) if media_dir is not None else None
        self.threads, self.cvat_version = threads, cvat_version
        self.users = [u if isinstance(u, str) else ":".join(u) for u in (users or [])]
        self.username, _, self.password = (self.users[0] if self.users else "admin:admin").partition(":")
        self._own_log = log_path is None
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="fakecvat-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self._env = env
        self.proc: subprocess.Popen | None = None
        self._drainer: threading.Thread | None = None
        self._finalizer = None
        self.scratch_dir: str | None = None  # the lives' TMPDIR (made by the first start, removed by close)
        self._scratch_finalizer = None
        self._http = requests.Session()  # for get()/control(); session() hands out fresh ones

    # -- lifecycle ----------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The ``serve`` command line of the next start."""
        cmd = [sys.executable, "-m", "fakecvat", "serve", "--host", self.host,
               "--port", str(self.port), "--threads", str(self.threads)]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        if self.share_dir is not None:
            cmd += ["--share-dir", str(self.share_dir)]
        if self.media_dir is not None:
            cmd += ["--media-dir", str(self.media_dir)]
        for user in self.users:
            cmd += ["--user", user]
        if self.cvat_version:
            cmd += ["--cvat-version", self.cvat_version]
        return cmd

    def start(self, timeout: float = 30.0) -> "FakeCVATProcess":
        """Start a life and return once it answers ``/api/server/about``; raises (with the
        log's tail) when it exits or stays silent for ``timeout`` seconds."""
        if self.alive():
            raise RuntimeError(f"fakecvat already running (pid {self.proc.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self._env is None else self._env)
        if Path(_PACKAGE_PARENT).name not in ("site-packages", "dist-packages"):
            # a source checkout: let the child import it (an installed fakecvat needs nothing,
            # and putting site-packages ahead of the stdlib could shadow it)
            env["PYTHONPATH"] = _PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.scratch_dir is None:
            self.scratch_dir = tempfile.mkdtemp(prefix="fakecvat-proc-")
            # made before any life's reaper, so at interpreter exit it runs after them
            self._scratch_finalizer = weakref.finalize(self, shutil.rmtree, self.scratch_dir, True)
        env["TMPDIR"] = self.scratch_dir
        proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
        self.proc = proc
        # the safety net: a process still running when this object is collected or the
        # interpreter exits is reaped (the finalizer holds the Popen, never ``self``)
        self._finalizer = weakref.finalize(self, _reap, proc)
        ready, found = threading.Event(), []
        self._drainer = threading.Thread(target=_drain, args=(proc.stderr, self.log_path, ready, found),
                                         name=f"fakecvat-log:{proc.pid}", daemon=True)
        self._drainer.start()
        try:
            if not ready.wait(timeout):
                raise RuntimeError(f"fakecvat not serving after {timeout:g}s:\n{self.log_tail()}")
            if not found:
                raise RuntimeError(f"fakecvat exited with {proc.wait(10)}:\n{self.log_tail()}")
            m = re.match(r"http://(.+):(\d+)$", found[0])
            self.port = int(m.group(2)) if m else self.port  # port 0 -> the one it got, for good
            self._http.get(self.url + "/api/server/about", timeout=10).raise_for_status()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> int | None:
        """End this life: SIGTERM (clean shutdown), SIGKILL after 10 s. Returns the exit code."""
        return self._end(_reap)

    def kill(self) -> int | None:
        """kill -9 this life (what a crash or an OOM kill looks like to the clients)."""
        def hard(proc):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        return self._end(hard)

    def restart(self, timeout: float = 30.0) -> "FakeCVATProcess":
        """stop() then start(), on the same port and data dir."""
        self.stop()
        return self.start(timeout)

    def close(self, keep_log: bool = False) -> None:
        """stop(), remove the lives' temporary files, and the log if this object made it (and
        ``keep_log`` is false)."""
        self.stop()
        if self._scratch_finalizer is not None:
            self._scratch_finalizer()
            self.scratch_dir = self._scratch_finalizer = None
        if self._own_log and not keep_log:
            self.log_path.unlink(missing_ok=True)

    def _end(self, how) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        how(proc)
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._drainer is not None:
            self._drainer.join(10)  # the pipe hit EOF: every last line is in the log
        self._http.close()  # drop keep-alive connections to the dead life (the session stays usable)
        return proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive() else None

    @property
    def url(self) -> str:
        """``http://HOST:PORT``; empty before the first start when the port is 0."""
        return f"http://{self.host}:{self.port}" if self.port else ""

    def __enter__(self) -> "FakeCVATProcess":
        return self if self.alive() else self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.close(keep_log=exc_type is not None)  # a failure keeps the server's side of it

    # -- looking at it ------------------------------------------------------------------------
    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def peak_rss_mb(self) -> float | None:
        """High-water resident set of the running server (Linux /proc VmHWM), in MiB."""
        if not self.alive():
            return None
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    # -- talking to it ------------------------------------------------------------------------
    def session(self) -> requests.Session:
        """A new requests session logged in with Basic auth as the first user."""
        s = requests.Session()
        s.auth = (self.username, self.password)
        return s

    def get(self, path: str, timeout: float = 60, **params):
        """GET ``path`` (e.g. ``/api/tasks``) as the first user; the JSON answer; raises on 4xx/5xx."""
        r = self._http.get(self.url + path, params=params, auth=(self.username, self.password),
                           timeout=timeout)
        r.raise_for_status()
        return r.json()

    def control(self, method: str, path: str, timeout: float = 30, **kw):
        """Call the control API (``/_fakecvat/...``: state, faults, reset, ...); the JSON or None."""
        r = self._http.request(method, self.url + path, timeout=timeout, **kw)
        r.raise_for_status()
        return r.json() if r.content else None
