# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Serve vLLM's /metrics, and nothing else, on a scrape address.

vLLM serves its Prometheus metrics on its API port, which the vllm role binds to 127.0.0.1.
This small server listens on the scrape address (for example the host's management network)
and answers GET /metrics (and HEAD) with what vLLM's own /metrics says; every other path is
404 and every other method 405, so the API (completions, embeddings, model listing) stays
closed. When vLLM does not answer, /metrics is 503 (Prometheus then records the target down).
Standard library only; one request at a time is enough for a scraper.
"""
import argparse
import http.server
import socket
import sys
import urllib.error
import urllib.request


def make_handler(upstream: str, timeout: float):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "vllm-metrics-exporter"
        sys_version = ""

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802  (http.server's naming)
            if self.path.split("?", 1)[0] != "/metrics":
                self._send(404, b"only /metrics is served here\n")
                return
            try:
                with urllib.request.urlopen(upstream, timeout=timeout) as resp:  # nosec: a fixed loopback URL
                    body = resp.read()
                    ctype = resp.headers.get("Content-Type") or "text/plain; version=0.0.4; charset=utf-8"
            except (urllib.error.URLError, OSError) as exc:
                self._send(503, f"vLLM's /metrics did not answer: {exc}\n".encode())
                return
            self._send(200, body, ctype)

        do_HEAD = do_GET

        def _refuse(self):
            self._send(405, b"only GET /metrics is served here\n")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            pass  # a scrape every 15 s is not worth a journal line

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-address", required=True)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="vLLM's metrics URL, e.g. http://127.0.0.1:8000/metrics")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    server_class = http.server.HTTPServer
    if ":" in args.listen_address:
        class V6Server(http.server.HTTPServer):
            address_family = socket.AF_INET6
        server_class = V6Server
    server = server_class((args.listen_address, args.listen_port), make_handler(args.upstream, args.timeout))
    print(f"serving {args.upstream} as http://{args.listen_address}:{args.listen_port}/metrics", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
