"""``python -m bench.nullserver``: an HTTP endpoint that reads and discards request bodies.

The raw-upload ceiling: a multipart POST of the same bytes to this server over loopback is as
fast as any client can hand data to a server on this machine."""
from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The answer leaves in one write, without Nagle: written as headers then body (two small
    # writes) on a kept-alive connection, the second waited for the client's delayed ACK,
    # ~40 ms, which a client reusing its connection paid and a fresh one did not.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def do_POST(self):
        left = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:  # chunked bodies: size line, data, CRLF ... until a zero-size chunk
                size = int(self.rfile.readline().split(b";")[0], 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
        while left > 0:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        body = b'{"ok": true}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST

    def log_message(self, *args):
        pass


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    print(f"nullserver serving on http://127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
