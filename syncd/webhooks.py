"""CVAT webhooks for instant pulls: a small threaded HTTP listener, and its registration in CVAT.

The listener accepts ``POST`` deliveries and trusts one only if ``X-Signature-256:
sha256=<hex HMAC-SHA256(secret, raw body)>`` matches the secret this daemon generated at start
(CVAT signs exactly the bytes it sends). Unsigned → 401, bad signature → 403, a body already
accepted once (replay, or CVAT's manual redelivery) → 409, oversized → 413, not JSON → 400.
A valid ``update:job`` (or task/project change) only calls ``on_change()``: the daemon then
looks again (level-triggered), it never acts on the payload's content. A lost webhook therefore
costs nothing but latency: polling still runs.

Registration (``Registrar``): one project webhook per CVAT project the daemon's runs use; for
tasks without a project, one organization webhook when an organization is configured; with
neither, webhooks cannot work (CVAT has no per-task webhooks) and the daemon says it polls.
Webhooks left by an earlier daemon on the same root (kill -9) are found by their description
and removed, so they do not pile up in CVAT.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import syncd.logs as logs

log = logs.get("webhooks")

MAX_BODY = 4 << 20                # CVAT payloads are a few kB; refuse anything silly
REPLAY_MEMORY = 10_000            # signed bodies remembered to refuse replays
EVENTS = ("update:job",)
_WAKE_EVENTS = ("update:job", "update:task", "delete:task", "update:project")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Signature-256`` value CVAT sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server_version = "syncd-webhooks"
    sys_version = ""
    listener: "Listener"  # set on the per-listener subclass

    def log_message(self, fmt, *args):  # route http.server's chatter to our logger, quietly
        pass

    def _answer(self, code: int, text: str) -> None:
        body = json.dumps({"detail": text}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(405, "deliveries are POSTed")

    def do_POST(self):
        code, text = self.listener.receive(self.headers, self.rfile, self.client_address[0])
        self._answer(code, text)


class Listener:
    """A threaded HTTP server on (host, port) verifying signed CVAT deliveries."""

    def __init__(self, host: str, port: int, on_change: Callable[[dict], None], *,
                 secret: str | None = None):
        # 32 random bytes as hex: 64 chars, CVAT's limit for a webhook secret.
        self.secret = secret or secrets.token_hex(32)
        logs.add_secret(self.secret)
        self.host, self.requested_port = host, port
        self.on_change = on_change
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.accepted = 0

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.requested_port

    @property
    def target_url(self) -> str:
        """The URL CVAT must POST to. A wildcard bind address is replaced by this host's name."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> "Listener":
        handler = type("Handler", (_Handler,), {"listener": self})
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_cls = type("Server", (ThreadingHTTPServer,),
                          {"address_family": family, "daemon_threads": True})
        self._server = server_cls((self.host, self.requested_port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="syncd-webhooks", daemon=True)
        self._thread.start()
        logs.event(log, "webhook listener started", url=self.target_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "Listener":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one delivery ---------------------------------------------------------------------------

    def receive(self, headers, rfile, peer: str) -> tuple[int, str]:
        try:
            length = int(headers.get("Content-Length") or "")
        except ValueError:
            return 411, "Content-Length required"
        if length < 0 or length > MAX_BODY:
            return 413, "body too large"
        body = rfile.read(length)
        given = (headers.get("X-Signature-256") or "").strip()
        if not given:
            self._reject(peer, "unsigned delivery")
            return 401, "X-Signature-256 header required"
        expected = sign(self.secret, body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            self._reject(peer, "bad signature")
            return 403, "signature does not match"
        digest = expected[len("sha256="):]
        with self._lock:
            if digest in self._seen:
                replay = True
            else:
                replay = False
                self._seen[digest] = None
                while len(self._seen) > REPLAY_MEMORY:
                    self._seen.popitem(last=False)
        if replay:
            self._reject(peer, "replayed delivery")
            return 409, "delivery already received"
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            return 400, "body is not a JSON object"
        event = payload.get("event")
        self.accepted += 1
        if event in _WAKE_EVENTS:
            logs.event(log, "webhook", webhook_event=event,
                       job=(payload.get("job") or {}).get("id")
                       if isinstance(payload.get("job"), dict) else None)
            try:
                self.on_change(payload)
            except Exception:
                log.exception("webhook callback failed")
        return 200, "ok"

    def _reject(self, peer: str, why: str) -> None:
        logs.event(log, "webhook delivery rejected", level=30, reason=why, peer=peer)


class Registrar:
    """Keeps CVAT's webhooks pointing at this daemon: one per project, or one per organization."""

    def __init__(self, root, listener: Listener, *, organization: str = ""):
        self.listener = listener
        self.organization = organization or ""
        real = os.path.realpath(root)
        self.description = "syncd " + hashlib.sha256(real.encode()).hexdigest()[:16]
        self.ids: dict[str, int] = {}      # "project:<id>" | "organization" -> webhook id
        self._swept = False
        self._said_polling = False

    def sync(self, client, projects: set[int], *, want_org: bool) -> None:
        """Register what is missing (CVAT errors propagate; the caller retries next pass)."""
        if not self._swept:
            self._sweep(client)
            self._swept = True
        wanted = {f"project:{p}" for p in projects}
        if want_org:
            if self.organization:
                wanted.add("organization")
            elif not self._said_polling:
                self._said_polling = True
                logs.event(log, "tasks without a project and no organization: CVAT cannot send "
                                "webhooks for them, polling instead")
        for name in sorted(wanted - set(self.ids)):
            kind, _, pid = name.partition(":")
            kwargs = {"organization": True} if kind == "organization" else {"project_id": int(pid)}
            hook = client.create_webhook(self.listener.target_url, events=EVENTS,
                                         secret=self.listener.secret,
                                         description=self.description,
                                         enable_ssl=False, **kwargs)
            self.ids[name] = int(hook["id"])
            logs.event(log, "webhook registered", webhook_id=hook["id"], scope=name,
                       url=self.listener.target_url)

    def _sweep(self, client) -> None:
        """Delete webhooks an earlier daemon on this root left behind (their secret is lost)."""
        for hook in client.list_webhooks():
            if hook.get("description") == self.description:
                client.delete_webhook(hook["id"])
                logs.event(log, "stale webhook removed", webhook_id=hook["id"])

    def close(self, client) -> None:
        """Best effort: remove our webhooks at shutdown (a dead listener helps nobody)."""
        for name, hid in list(self.ids.items()):
            try:
                client.delete_webhook(hid)
            except Exception as exc:
                logs.event(log, "could not remove webhook", level=30, webhook_id=hid,
                           cause=str(exc))
            self.ids.pop(name, None)
