"""Transport to a CVAT server: one ``requests`` session, authentication, bounded timeouts,
retries with backoff, pagination, and error bodies turned into ``CVATError``.

Retry policy (why each case is or is not retried):
- the connection could not be opened (refused, connect timeout): nothing reached the server,
  so any method is retried;
- 429 and 503: the server refused before doing the work, so any method is retried,
  waiting at least ``Retry-After``;
- 502/504, 500 (GET/HEAD only), a read timeout or a connection lost mid-answer: the server may
  have done the work (cvat#168: the upload succeeded, the client saw 504), so only idempotent
  methods (GET, HEAD, OPTIONS, PUT, DELETE) or calls marked ``idempotent=True`` are retried;
- anything else (4xx) is final.
Session logins are redone once when CVAT answers 401 (expired or ended session).
Credentials are kept in private attributes and never appear in repr, logs or error messages.
A client holds one login session: give each worker thread its own client (a re-login from one
thread would replace the cookies another thread is using).
"""
from __future__ import annotations

import copy
import email.utils
import logging
import os
import random
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from .errors import CVATError, detail_of, parse_body

log = logging.getLogger("syncd.cvat")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
ALWAYS_RETRY = frozenset({429, 503})          # refused before any work was done
AMBIGUOUS_RETRY = frozenset({502, 504})       # a proxy gave up; the work may have happened
MAX_RETRY_AFTER = 300.0                       # never sleep longer than this on one Retry-After
# Real CVAT (DRF) answers 406 to an Accept listing only application/json.
ACCEPT = "application/vnd.cvat+json, application/json;q=0.9, */*;q=0.8"


def _settle_environment(session: requests.Session, url: str) -> None:
    """Read once, for this server, what ``requests`` reads from the environment before every
    request: the proxy variables (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...) and the CA
    bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``). It scanned all of ``os.environ``
    twice per request: ~40 % of the client's function calls per request under cProfile, and
    ~0.8 ms off a zero-copy upload's five requests (the daemon polls all day). ``~/.netrc``,
    which ``requests`` also reads, is not used: syncd's credentials are explicit (a stray entry
    for the host would add Basic auth for another user), as with cvat-sdk. The environment of
    the moment the client is made applies."""
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle


class Transport:
    """HTTP plumbing shared by every typed call (see ``CVATClient`` for those)."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, organization: str | None = None,
                 timeout: float | tuple[float, float] = (5, 60), retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 30, session: requests.Session | None = None):
        parts = urlsplit(url if "://" in url else "https://" + url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CVATError(f"invalid CVAT URL {_safe_url(url)!r}: expected http(s)://host[:port]")
        if parts.username and username is None:
            # credentials written into the URL: take them out so they never get logged
            username, password = parts.username, parts.password
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.username = username
        self._password = password
        self._token = token
        self.organization = organization
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._own_session = session is None
        self._session = session or requests.Session()
        if self._own_session:
            # our retries are the only ones: urllib3's would hide attempts from our policy
            adapter = HTTPAdapter(max_retries=0, pool_maxsize=8)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
            _settle_environment(self._session, self.url)
        self._session.headers.update({"Accept": ACCEPT, "User-Agent": "syncd-cvat-client/1"})
        self._logged_in = False
        self._sleep = time.sleep  # a seam for nothing but readability of retry code

    # ---- identity ------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        p = urlsplit(self.url)
        return f"{p.scheme}://{p.netloc}"

    def __repr__(self) -> str:
        who = self.username or ("<token>" if self._token else None)
        return f"{type(self).__name__}(url={self.url!r}, user={who!r})"

    __str__ = __repr__

    def clone(self) -> "Transport | None":
        """Another client for the same server and identity with its own HTTP session, for
        another thread (see the module note), or None when the session was handed in by the
        caller (it cannot be duplicated faithfully). A logged-in clone starts from copies of
        the session cookies, so it needs no login of its own; it logs in by itself on a 401."""
        if not self._own_session:
            return None
        other = type(self)(self.url, username=self.username, password=self._password, token=self._token,
                           organization=self.organization, timeout=self.timeout, retries=self.retries,
                           backoff=self.backoff, max_backoff=self.max_backoff)
        for name, value in vars(self).items():  # per-instance tuning (upload sizes, ...) too
            if not name.startswith("_") and name not in vars(other):
                setattr(other, name, value)
        if self._logged_in:
            for cookie in self._session.cookies:
                other._session.cookies.set_cookie(copy.copy(cookie))
            other._logged_in = True
        return other

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- authentication ----------------------------------------------------------------------

    @property
    def uses_session(self) -> bool:
        return self._token is None and self.username is not None

    def login(self, *, retries: int | None = None) -> None:
        """Session login: POST /api/auth/login, keeping the ``sessionid``/``csrftoken`` cookies.
        ``retries`` as for ``request`` (default: the client's)."""
        if not self.uses_session:
            return
        if self._password is None:
            raise CVATError(f"no password given for CVAT user {self.username!r}")
        # A stale sessionid makes the (CSRF-exempt) login view enforce CSRF: start clean.
        self._session.cookies.clear()
        self._logged_in = False
        try:
            self.request("POST", "/api/auth/login", json={"username": self.username, "password": self._password},
                         _auth=False, idempotent=True, retries=retries)
        except CVATError as e:
            if e.status in (400, 401, 403):
                raise CVATError(f"CVAT login as {self.username!r} at {self.url} failed: {e.detail or e.status}",
                                status=e.status, url=e.url, method="POST", body=e.body) from None
            raise
        names = {c.name for c in self._session.cookies}
        if not {"sessionid", "csrftoken"} <= names:
            raise CVATError(f"CVAT login as {self.username!r} at {self.url} set no session cookies "
                            f"(got {sorted(names)})", url=self.url + "/api/auth/login", method="POST")
        self._logged_in = True

    def log_in_ahead(self) -> threading.Thread | None:
        """Start a session login in a thread, so that its round trip (long on a real CVAT,
        which hashes the password with PBKDF2) overlaps the caller's own work, such as reading
        sample files; None when there is nothing to do. The caller joins the thread before
        its next request (the client is not shared between threads meanwhile). One attempt,
        quietly: if it fails, the next request logs in as usual and reports the failure where
        it always did."""
        if not self.uses_session or self._logged_in or self._password is None:
            return None

        def attempt() -> None:
            try:
                self.login(retries=0)
            except Exception as e:  # (the next request says what is wrong, with its context)
                log.debug("early login to %s failed: %s", self.url, e)
        thread = threading.Thread(target=attempt, name="syncd-login", daemon=True)
        thread.start()
        return thread

    def logout(self) -> None:
        if self.uses_session and self._logged_in:
            try:
                self.request("POST", "/api/auth/logout", retries=0)
            finally:
                self._logged_in = False
                self._session.cookies.clear()

    def _auth_headers(self, method: str) -> dict:
        headers = {"Origin": self.origin, "Referer": self.url + "/"}
        if self.organization is not None:
            headers["X-Organization"] = self.organization
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self.uses_session:
            csrf = self._cookie("csrftoken")
            if csrf:
                headers["X-CSRFToken"] = csrf
        return headers

    def _cookie(self, name: str) -> str | None:
        # cookies.get() raises on duplicates (same name, several domains): take the last one
        value = None
        for c in self._session.cookies:
            if c.name == name:
                value = c.value
        return value

    # ---- requests ------------------------------------------------------------------------------

    def absolute(self, path_or_url: str) -> str:
        """An absolute URL on *our* server. Absolute URLs from CVAT (``next``, ``Location``) are
        rebased onto the configured origin: behind a proxy they may name an internal host, and
        credentials must never be sent anywhere else."""
        if "://" not in path_or_url:
            return self.url + "/" + path_or_url.lstrip("/")
        p = urlsplit(path_or_url)
        mine = urlsplit(self.url)
        return urlunsplit((mine.scheme, mine.netloc, p.path, p.query, ""))

    def request(self, method: str, path_or_url: str, *, idempotent: bool | None = None,
                retries: int | None = None, timeout=None, expect: tuple[int, ...] | None = None,
                body_factory: Callable[[], dict] | None = None, _auth: bool = True,
                **kw) -> requests.Response:
        """Send one logical request (several attempts if need be) and return the response.

        ``idempotent`` overrides the method-based retry decision for ambiguous failures.
        ``body_factory`` is called before every attempt and returns extra ``requests`` keyword
        arguments; streamed bodies use it so that a retry re-reads the files from the start.
        ``expect``: acceptable statuses (default: any 2xx). Others raise ``CVATError``.
        The response returned carries ``unanswered``: how many earlier attempts reached the
        server and got no usable answer (timeout, connection lost, 502/504), i.e. may still be
        applied by the server later, after this one (see ``CVATClient.put_task_annotations``).
        """
        method = method.upper()
        url = self.absolute(path_or_url)
        safe = method in IDEMPOTENT if idempotent is None else idempotent
        max_retries = self.retries if retries is None else retries
        relogged = False
        attempt = 0
        unanswered = 0
        headers = dict(kw.pop("headers", None) or {})
        if _auth and self.uses_session and not self._logged_in:
            self.login()
        while True:
            # auth headers are rebuilt per attempt: a re-login brings a new CSRF token
            send_kw = dict(kw, headers={**(self._auth_headers(method) if _auth else {"Origin": self.origin}),
                                        **headers})
            extra = body_factory() if body_factory else {}
            if "headers" in extra:
                extra = dict(extra)
                send_kw["headers"].update(extra.pop("headers"))
            started = time.monotonic()
            try:
                resp = self._session.request(method, url, timeout=timeout or self.timeout, **send_kw, **extra)
            except requests.RequestException as exc:
                sent = not _not_sent(exc)
                retry = attempt < max_retries and (safe or not sent)
                what = f"{type(exc).__name__}"
                if not retry:
                    raise CVATError(f"{method} {_path(url)} failed: {what}: {_exc_text(exc)}"
                                    + (" (the server may have applied it)" if sent and not safe else ""),
                                    url=url, method=method, maybe_applied=sent and not safe) from None
                delay = self._delay(attempt, None)
                unanswered += sent
                log.warning("CVAT %s %s: %s; retry %d/%d in %.2fs", method, _path(url), what,
                            attempt + 1, max_retries, delay)
                self._sleep(delay)
                attempt += 1
                continue
            finally:
                _close_files(extra)
            elapsed = time.monotonic() - started
            log.debug("CVAT %s %s -> %s (%.3fs)", method, _path(url), resp.status_code, elapsed)
            status = resp.status_code
            ok = status in expect if expect else 200 <= status < 300
            if ok:
                resp.unanswered = unanswered
                return resp
            if status == 401 and _auth and self.uses_session and not relogged:
                # the session ended (logout elsewhere, server restart, expiry): log in once more
                log.info("CVAT %s %s -> 401; logging in again as %r", method, _path(url), self.username)
                relogged = True
                self.login()
                continue
            retryable = status in ALWAYS_RETRY or (safe and (status in AMBIGUOUS_RETRY or
                                                             (status == 500 and method in ("GET", "HEAD"))))
            if retryable and attempt < max_retries:
                unanswered += status not in ALWAYS_RETRY
                delay = self._delay(attempt, resp.headers.get("Retry-After"))
                log.warning("CVAT %s %s -> %d; retry %d/%d in %.2fs", method, _path(url), status,
                            attempt + 1, max_retries, delay)
                resp.close()
                self._sleep(delay)
                attempt += 1
                continue
            raise self._error(method, url, resp)

    @property
    def read_timeout(self) -> float:
        """How long one attempt waits for an answer (the second of a (connect, read) pair)."""
        return float(self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff with 'equal jitter', but never shorter than Retry-After."""
        cap = min(self.max_backoff, self.backoff * (2 ** attempt))
        delay = cap / 2 + random.uniform(0, cap / 2)
        hinted = _retry_after_seconds(retry_after)
        if hinted is not None:
            delay = min(max(hinted, 0.0), MAX_RETRY_AFTER) + random.uniform(0, min(0.1, self.backoff))
        return delay

    @staticmethod
    def _error(method: str, url: str, resp: requests.Response) -> CVATError:
        body = parse_body(resp.text, resp.headers.get("Content-Type", ""))
        detail = detail_of(body)
        msg = f"CVAT {method} {_path(url)} -> {resp.status_code} {resp.reason or ''}".rstrip()
        return CVATError(msg + (f": {detail}" if detail else ""), status=resp.status_code, url=url,
                         method=method, body=body)

    def call(self, method: str, path: str, **kw) -> Any:
        """``request`` and decode the JSON answer (None for an empty body)."""
        return self.decode(self.request(method, path, **kw))

    @staticmethod
    def decode(resp: requests.Response) -> Any:
        """The JSON answer of ``resp`` (None for an empty body), or CVATError if it is not JSON."""
        method = resp.request.method if resp.request is not None else "?"
        if not resp.content:
            return None
        try:
            # orjson reads the bytes as they are: no text decode or encoding guess first
            # (a 20k-shape job is ~5 MB); what it refuses still gets the standard parser's say
            return orjson.loads(resp.content)
        except ValueError:
            pass
        try:
            return resp.json()
        except ValueError:
            raise CVATError(f"CVAT {method} {_path(resp.url)} -> {resp.status_code}: answer is not JSON "
                            f"({detail_of(resp.text)[:80]!r})", status=resp.status_code, url=resp.url,
                            method=method, body=resp.text) from None

    def get(self, path: str, **params) -> Any:
        return self.call("GET", path, params=params or None)

    def paginate(self, path: str, **params) -> Iterator[dict]:
        """Every item of a paginated list, following ``next`` to the end. A bare list (the few
        unpaginated endpoints) is yielded as is."""
        params.setdefault("page_size", 100)
        page = self.call("GET", path, params=params)
        while True:
            if isinstance(page, list):
                yield from page
                return
            yield from page.get("results", [])
            nxt = page.get("next")
            if not nxt:
                return
            page = self.call("GET", nxt)  # next already carries every query parameter

    # ---- server info ---------------------------------------------------------------------------

    def about(self) -> dict:
        return self.call("GET", "/api/server/about", _auth=self._token is not None or self._logged_in)

    def server_version(self) -> tuple:
        """``about().version`` as a tuple of ints, e.g. ``(2, 52, 0)``; dev suffixes dropped."""
        out = []
        for part in str(self.about().get("version", "")).lstrip("vV").split("."):
            digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
            if not digits:
                break
            out.append(int(digits))
            if not part.isdigit():
                break
        return tuple(out)


# ---- helpers ---------------------------------------------------------------------------------------

def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly never reached the server (safe to resend anything)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        text = repr(exc.args[0]) if exc.args else ""
        return "NewConnectionError" in text or "NameResolutionError" in text or "Connection refused" in text
    return False


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _path(url: str) -> str:
    """The path of a URL without query string (queries may be long; they never hold secrets,
    but a path is what a user recognises)."""
    return urlsplit(url).path or "/"


def _safe_url(url: str) -> str:
    p = urlsplit(url)
    if p.password is not None or p.username is not None:
        return urlunsplit((p.scheme, p.hostname or "", p.path, "", ""))
    return url


def _exc_text(exc: Exception) -> str:
    # urllib3 messages embed the pool object repr; keep the readable tail
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _close_files(extra: dict) -> None:
    for key, value in extra.items():
        if key == "headers":
            continue
        close = getattr(value, "close", None)
        if callable(close):
            close()


__all__ = ["Transport", "CVATError"]
