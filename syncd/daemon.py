"""``syncd run ROOT``: the service. Lock, signals, sd_notify, logging, and the main loop.

The loop is level-triggered: file events, webhooks and a timer (``poll_interval``) only set one
"look again" flag; the loop runs a reconcile pass whenever the flag is set or the pass itself
asked to be re-run after some delay (a batch window closing, a file settling, a backoff ending).

Service behaviour:
- one daemon per root (flock in ``.syncd/daemon.lock``); a second one exits 1 saying who holds it;
- SIGTERM/SIGINT: the current step finishes, then exit 0 (a second signal exits at once);
- ``READY=1`` / ``STOPPING=1`` / ``WATCHDOG=1`` to ``$NOTIFY_SOCKET`` when set (systemd
  ``Type=notify``), written to the unix datagram socket directly: no systemd dependency;
- never prompts; logs one line per event on stderr; safe to kill -9 at any instant, because
  every step records its intent first (syncd.ops) and this module writes no file itself.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import syncd.logs as logs
from syncd.config import load_config
from syncd.errors import SyncdError
from syncd.runs import acquire_root_lock
from syncd.signals import SignalRelay

log = logs.get("daemon")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2


def sd_notify(message: str) -> bool:
    """Send ``message`` to systemd's notification socket; a no-op when NOTIFY_SOCKET is unset."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        logs.event(log, "sd_notify failed", level=30, cause=str(exc))
        return False


def _watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec (the recommended ping period), if enabled for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2e6)
    except ValueError:
        return None


class LookAgain:
    """The one flag every trigger sets. Waiting returns early when it is set."""

    def __init__(self):
        self._event = threading.Event()

    def set(self, *_args) -> None:
        self._event.set()

    def wait_and_clear(self, timeout: float | None) -> bool:
        fired = self._event.wait(timeout)
        self._event.clear()
        return fired


def _make_client(cfg):
    # Imported here: `syncd --help` and friends need not load requests.
    from syncd.cvat import client_from_env
    # Few transport retries: the reconciler has its own backoff, and a step stuck in long
    # retries would delay a SIGTERM.
    return client_from_env(cfg.cvat.url or None, organization=cfg.cvat.organization or None,
                           retries=2, max_backoff=5, **_timeout_from_env())


def _timeout_from_env() -> dict:
    """``SYNCD_CVAT_TIMEOUT``: seconds ("READ" or "CONNECT,READ") before a CVAT call gives up.
    The default (5 s connect, 60 s read) suits real servers; the reliability campaigns lower it
    so that a slow answer is a timeout within their time budget."""
    raw = os.environ.get("SYNCD_CVAT_TIMEOUT", "").strip()
    if not raw:
        return {}
    try:
        parts = [float(p) for p in raw.split(",")]
    except ValueError:
        raise SyncdError(f"SYNCD_CVAT_TIMEOUT: expected seconds or CONNECT,READ, got {raw!r}") from None
    if len(parts) not in (1, 2) or any(p <= 0 for p in parts):
        raise SyncdError(f"SYNCD_CVAT_TIMEOUT: expected positive seconds or CONNECT,READ, got {raw!r}")
    return {"timeout": (min(5.0, parts[0]), parts[0]) if len(parts) == 1 else tuple(parts)}


class Daemon:
    """The running service for one root (tests may drive it in-process via ``run``)."""

    def __init__(self, root, cfg, client):
        from syncd.reconcile import Reconciler
        from syncd.watch import StableFiles, Watcher

        self.root = os.path.realpath(root)
        self.cfg = cfg
        self.client = client
        self.stop = threading.Event()
        self.flag = LookAgain()
        self.poll_interval = float(cfg.cvat.poll_interval or 10.0)
        stable = StableFiles(quiet=1.0)
        self.reconciler = Reconciler(self.root, cfg, lambda: client, stop=self.stop,
                                     stable=stable)
        self.rescan_base = max(60.0, self.poll_interval * 6)
        # No periodic rescan before the first pass has walked the root: on a big root that walk
        # outlasts rescan_base, and a rescan queued meanwhile walked it all again at once (the
        # 7-8 % "idle" CPU measured at 1M media). _pace_rescans sets the interval after it.
        self.watcher = Watcher(self.root, self._on_files, debounce=0.5,
                               rescan_interval=None, stable=stable)
        self._walks_seen = 0
        # A safety net beyond the watcher's own periodic rescan (which arrives as a hint).
        self.reconciler.full_rescan = self.rescan_base * 2
        self.passes = 0
        self.listener = None
        self.registrar = None
        self.once = logs.Once()

    # -- triggers -----------------------------------------------------------------------------

    def _on_files(self, paths) -> None:
        self.reconciler.hint(paths)  # None: the watcher's periodic or directory rescan
        self.flag.set()

    def _on_webhook(self, payload) -> None:
        self.reconciler.poke()
        self.flag.set()

    def request_stop(self, signum=None, _frame=None) -> None:
        """Finish the current step, then stop; a second signal exits at once. Called by the
        signal relay's thread (``syncd.signals``), never inside the interrupted code."""
        if self.stop.is_set() and signum is not None:
            # Second signal: the user insists. Safe: all state is crash-consistent on disk.
            logs.event(log, "second signal, exiting now", level=30)
            os._exit(EXIT_OK if signum == signal.SIGTERM else 130)
        if signum is not None:
            logs.event(log, "stopping: finishing the current step",
                       signal=signal.Signals(signum).name)
        self.stop.set()
        self.flag.set()

    # -- lifecycle ------------------------------------------------------------------------------

    def _start_webhooks(self) -> None:
        if not self.cfg.cvat.webhook:
            return
        from syncd.webhooks import Listener, Registrar

        host, port = self.cfg.cvat.webhook
        self.listener = Listener(host, port, self._on_webhook).start()
        self.registrar = Registrar(self.root, self.listener,
                                   organization=self.cfg.cvat.organization)

    def _sync_webhooks(self) -> None:
        if self.registrar is None or not self.reconciler.cvat_ready():
            return  # CVAT in backoff: the reconciler will say when it is back
        try:
            projects = self.reconciler.projects()
            want_org = any(not (r.get("project") or {}).get("id")
                           for r in self.reconciler.store.list()
                           if r.get("status") not in ("loaded", "failed")
                           and (r.get("config") or {}).get("rule"))
            self.registrar.sync(self.client, projects, want_org=want_org)
            self.once.clear("webhooks")
        except Exception as exc:
            if self.once.first("webhooks", str(exc)):
                logs.event(log, "cannot register webhooks yet; polling meanwhile", level=30,
                           cause=str(exc))

    def serve(self) -> int:
        """The main loop, until stopped. Returns the exit status."""
        self.watcher.start()
        # Passes look only at what the watcher reports, plus full rescans; without a working
        # watcher every pass walks the root, as it must to notice anything.
        self.reconciler.incremental = self.watcher.observing
        try:
            self._start_webhooks()
        except OSError as exc:
            self.watcher.stop()
            raise SyncdError(f"cannot listen for webhooks on {self.cfg.cvat.webhook}: "
                             f"{exc.strerror or exc}") from None
        watchdog = _watchdog_interval()
        sd_notify("READY=1\nSTATUS=watching " + self.root)
        logs.event(log, "daemon ready", root=self.root, rules=[r.name for r in self.cfg.rules],
                   poll_interval=self.poll_interval,
                   webhook=self.listener.target_url if self.listener else None,
                   watcher="inotify" if self.watcher.observing else "rescan")
        try:
            next_pass_at = time.monotonic()  # a first pass at start: resume what was in flight
            while not self.stop.is_set():
                if watchdog:
                    sd_notify("WATCHDOG=1")  # only from the loop: a hung loop stops pinging
                timeout = max(0.0, next_pass_at - time.monotonic())
                if watchdog:
                    timeout = min(timeout, watchdog)
                fired = self.flag.wait_and_clear(timeout)
                if self.stop.is_set():
                    break
                if not fired and time.monotonic() < next_pass_at:
                    continue  # woke only to ping the watchdog
                wait = self._one_pass()
                self._sync_webhooks()
                self.passes += 1
                self._pace_rescans()
                if self.passes == 1:
                    # For supervisors and benchmarks: the first (full) pass is done.
                    sd_notify(f"STATUS=idle after first pass: {self.reconciler.media_count} "
                              f"media in {self.root}")
                wait = self.poll_interval if wait is None else min(wait, self.poll_interval)
                next_pass_at = time.monotonic() + wait
        finally:
            sd_notify("STOPPING=1")
            logs.event(log, "daemon stopping")
            self.watcher.stop()
            if self.listener is not None:
                if self.registrar is not None:
                    self.registrar.close(self.client)
                self.listener.stop()
        logs.event(log, "daemon stopped")
        return EXIT_OK

    def _pace_rescans(self) -> None:
        """Periodic full rescans are a safety net for lost events; keep them well under 1% of
        a core on big roots (a warm 100k-file walk takes ~1 s) by spacing them 200x their cost."""
        if self.reconciler.incremental:
            interval = max(self.rescan_base, 200.0 * self.reconciler.full_scan_seconds)
            if self.reconciler.full_scans != self._walks_seen:
                # this pass walked the root: the next periodic rescan is a whole interval away
                self._walks_seen = self.reconciler.full_scans
                self.watcher.rescanned(interval)
            else:
                self.watcher.rescan_interval = interval
            self.reconciler.full_rescan = interval * 2

    def _one_pass(self) -> float | None:
        try:
            wait = self.reconciler.pass_once()
            self.once.clear("pass")
            return wait
        except Exception as exc:  # a bug in one pass must not end the service
            if self.once.first("pass", str(exc)):
                logs.event(log, "reconcile pass failed", level=40, cause=str(exc),
                           exc_info=True)
            return min(self.poll_interval, 30.0)


def run(root, *, log_format: str = "text", log_level: str = "INFO") -> int:
    """``syncd run ROOT``: returns the process exit status."""
    logs.setup(log_format, log_level)
    if not os.path.isdir(root):
        logs.event(log, "not a directory", level=40, root=str(root))
        return EXIT_CONFIG
    try:
        cfg = load_config(root)
        client = _make_client(cfg)
    except SyncdError as exc:
        logs.event(log, f"cannot start: {exc}", level=40)
        return EXIT_CONFIG
    try:
        with acquire_root_lock(root):
            daemon = Daemon(root, cfg, client)
            try:
                with SignalRelay(daemon.request_stop):
                    return daemon.serve()
            finally:
                try:
                    client.close()
                except Exception:
                    pass
    except SyncdError as exc:
        logs.event(log, f"cannot start: {exc}", level=40)
        return EXIT_ERROR
