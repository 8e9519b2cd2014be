"""Serving fakecvat: a real multi-threaded WSGI server (waitress), in-process or standalone.

``FakeCVAT`` is the context manager tests use: it binds a free loopback port, serves in a
background thread, exposes ``.url``, ``.store`` and ``.reset()``, and stops cleanly.
"""
from __future__ import annotations

import threading

from waitress.server import create_server

from .app import DEFAULT_VERSION, create_app


# waitress reads 8 KiB per recv() by default: a 43 MB upload is then ~5,300 trips through its
# Python event loop (0.098 s on loopback, measured); 256 KiB reads take 0.047 s.
RECV_BYTES = 256 * 1024


class FakeCVAT:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, data_dir=None, users=None,
                 cvat_version: str = DEFAULT_VERSION, share_dir=None, threads: int = 8, media_dir=None):
        self.app = create_app(data_dir=data_dir, users_spec=users, cvat_version=cvat_version, share_dir=share_dir,
                              media_dir=media_dir)
        self.store = self.app.config["STORE"]
        try:
            self._server = create_server(self.app, host=host, port=port, threads=threads,
                                         ident="fakecvat", clear_untrusted_proxy_headers=True,
                                         channel_timeout=60, max_request_body_size=32 * 1024 ** 3,
                                         recv_bytes=RECV_BYTES)
        except BaseException:
            # nothing will serve: undo what create_app set up (its temporary media directory)
            self._run_stop_hooks()
            raise
        self.host = host
        self.port = self._server.effective_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeCVAT":
        self._thread = threading.Thread(target=self._server.run, name=f"fakecvat:{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.run()

    def stop(self) -> None:
        srv = self._server
        if self._thread and self._thread.is_alive():
            # Close every channel from inside the server's own loop (closing its sockets from
            # this thread races its select() and raises EBADF there); an empty map ends run().
            def close_all():
                for channel in list(srv._map.values()):
                    try:
                        channel.close()
                    except OSError:
                        pass
            try:
                srv.trigger.pull_trigger(close_all)
            except OSError:
                # the loop already closed its trigger (it is on its way out): nothing to wake
                pass
            self._thread.join(timeout=5)
        else:
            srv.close()
        srv.task_dispatcher.shutdown(timeout=2)
        self._run_stop_hooks()

    def _run_stop_hooks(self) -> None:
        for hook in self.app.config.get("STOP_HOOKS", []):  # webhook deliveries, temporary media
            hook(self.app)
        self.store.close()

    def reset(self) -> None:
        """Forget all state and re-seed the configured users (like POST /_fakecvat/reset)."""
        from . import control
        control.reset_state(self.app)

    @property
    def users(self) -> list[tuple[str, str]]:
        return list(self.app.config["USERS_SPEC"])

    def __enter__(self) -> "FakeCVAT":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
