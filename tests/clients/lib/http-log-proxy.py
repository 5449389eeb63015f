#!/usr/bin/env python3
"""Transparent HTTP/1.1 relay that logs each exchange as one JSON line.

Client tests put it between a client and berth to assert what the client really sent (chunked
PATCH, HEAD before GET, which blobs a per-platform pull fetches) and to pin down a failing
exchange. Bytes pass through unchanged; only message framing is parsed, to know where each
request and response ends. A connection that opens with a TLS handshake is relayed blind and
logged once as {"tls": true}, which shows that a client really used HTTPS.

usage: http-log-proxy.py UPSTREAM_HOST:PORT LOGFILE  (prints "listening on 127.0.0.1:PORT")
"""
import json
import socket
import sys
import threading

UPSTREAM_HOST, UPSTREAM_PORT = sys.argv[1].rsplit(":", 1)
LOG = open(sys.argv[2], "a", buffering=1)
LOCK = threading.Lock()


class Closed(Exception):
    pass


class Reader:
    """Reads framed HTTP messages from one socket, copying every byte to another."""

    def __init__(self, src, dst):
        self.src, self.dst, self.buf = src, dst, b""

    def _fill(self):
        data = self.src.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        self.dst.sendall(out)
        return out

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        return self._take(self.buf.index(b"\r\n") + 2)

    def head(self):
        first = self.line().decode("latin-1").strip()
        headers = {}
        while True:
            h = self.line().decode("latin-1")
            if h == "\r\n":
                return first, headers
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()

    def body(self, headers, until_close=False):
        """Relays a body; returns (length, chunked)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            total = 0
            while True:
                size = int(self.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.line() != b"\r\n":  # trailers, then the blank line
                        pass
                    return total, True
                self._take(size + 2)
                total += size
        if "content-length" in headers:
            n = int(headers["content-length"])
            self._take(n)
            return n, False
        if until_close:
            total = len(self.buf)
            self._take(total)
            try:
                while True:
                    data = self.src.recv(65536)
                    if not data:
                        break
                    self.dst.sendall(data)
                    total += len(data)
            except OSError:
                pass
            return total, False
        return 0, False


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client):
    upstream = socket.create_connection((UPSTREAM_HOST, int(UPSTREAM_PORT)))
    if client.recv(1, socket.MSG_PEEK) == b"\x16":  # TLS handshake record
        with LOCK:
            LOG.write(json.dumps({"tls": True}) + "\n")
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)
        return
    requests, responses = Reader(client, upstream), Reader(upstream, client)
    try:
        while True:
            line, req_headers = requests.head()
            method, target = line.split(" ")[:2]
            req_len, req_chunked = requests.body(req_headers)
            while True:
                status_line, resp_headers = responses.head()
                status = int(status_line.split(" ")[1])
                if status >= 200 or status == 101:
                    break
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                resp_len = 0
            else:
                resp_len, _ = responses.body(resp_headers, until_close=True)
            with LOCK:
                LOG.write(json.dumps({
                    "method": method, "target": target, "req_headers": req_headers,
                    "req_len": req_len, "req_chunked": req_chunked,
                    "status": status, "resp_headers": resp_headers, "resp_len": resp_len,
                }) + "\n")
    except (Closed, OSError, ValueError, IndexError):
        pass
    finally:
        for s in (client, upstream):
            try:
                s.close()
            except OSError:
                pass


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


main()
