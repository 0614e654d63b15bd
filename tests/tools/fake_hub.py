#!/usr/bin/env python3
"""A local stand-in for the Hugging Face Hub's file endpoint, for testing `vinscan model pull`.

usage: fake_hub.py DIR   (serves DIR/<owner>/<name>/<file> on 127.0.0.1, prints the port)
Answers GET /api/models/<owner>/<name>/revision/<revision> with the repository's file list
(`siblings`), as the Hub's model-info endpoint does, and
GET/HEAD /<owner>/<name>/resolve/<revision>/<file> like the Hub does for LFS files:
`x-repo-commit`, `x-linked-etag` (the file's sha256), `x-linked-size`, `Content-Range` on
ranged requests (the client reads the size from `bytes=0-0`), 404 for unknown files.
Logs each request path to stderr.
"""
import hashlib
import http.server
import json
import os
import re
import sys

ROOT = sys.argv[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(http.server.BaseHTTPRequestHandler):
    def _file(self):
        m = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", self.path)
        if not m:
            return None
        p = os.path.join(ROOT, m.group(1), m.group(2), m.group(4))
        return p if os.path.isfile(p) else None

    def do_HEAD(self):
        self.do_GET(body=False)

    def _info(self):
        m = re.fullmatch(r"/api/models/([^/]+)/([^/]+)/revision/([^/]+)", self.path)
        if not m:
            return None
        repo = os.path.join(ROOT, m.group(1), m.group(2))
        if not os.path.isdir(repo):
            return None
        files = sorted(os.path.relpath(os.path.join(d, f), repo) for d, _, fs in os.walk(repo) for f in fs)
        return json.dumps({"id": f"{m.group(1)}/{m.group(2)}", "sha": COMMIT,
                           "siblings": [{"rfilename": f} for f in files]}).encode()

    def do_GET(self, body=True):
        info = self._info()
        if info is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(info)))
            self.end_headers()
            if body:
                self.wfile.write(info)
            return
        path = self._file()
        if path is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = open(path, "rb").read()
        sha = hashlib.sha256(data).hexdigest()
        start, end, status = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            start = int(m.group(1))
            end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            status = 206
        chunk = data[start:end + 1]
        self.send_response(status)
        self.send_header("x-repo-commit", COMMIT)
        self.send_header("x-linked-etag", f'"{sha}"')
        self.send_header("x-linked-size", str(len(data)))
        self.send_header("ETag", f'"{sha}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if body:
            self.wfile.write(chunk)

    def log_message(self, fmt, *args):
        sys.stderr.write("hub: " + (fmt % args) + "\n")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
print(server.server_address[1], flush=True)
server.serve_forever()
