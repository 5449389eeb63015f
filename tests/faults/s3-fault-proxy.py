#!/usr/bin/env python3
"""A fault-injecting HTTP relay in front of an S3 server (moto), for the fault matrix.

    s3-fault-proxy.py UPSTREAM_URL PORT_FILE

Listens on a free loopback port (written to PORT_FILE) and relays every request to UPSTREAM_URL,
except that a share of them fail the way S3 fails: `500 InternalError`, `503 ServiceUnavailable`,
`503 SlowDown`, a connection reset with no answer, or a stall of a few seconds before relaying.
`POST /__faults` with a JSON body `{"rate": 0.2, "modes": ["500", "503", "slowdown", "reset",
"stall"], "seed": 1}` sets the faults (rate 0 turns them off); `GET /__faults` returns the counts
of relayed and faulted requests per mode.
"""

import http.client
import http.server
import json
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

UPSTREAM = urllib.parse.urlsplit(sys.argv[1])
LOCK = threading.Lock()
STATE = {"rate": 0.0, "modes": [], "random": random.Random(1)}
COUNTS = {"relayed": 0}

ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}


def pick_fault():
    with LOCK:
        if STATE["modes"] and STATE["random"].random() < STATE["rate"]:
            mode = STATE["random"].choice(STATE["modes"])
            COUNTS[mode] = COUNTS.get(mode, 0) + 1
            return mode
        COUNTS["relayed"] += 1
        return None


class Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(length) if length else b""

    def answer(self, status, body, content_type="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def control(self, body):
        if self.command == "POST":
            settings = json.loads(body or b"{}")
            with LOCK:
                STATE["rate"] = float(settings.get("rate", 0))
                STATE["modes"] = list(settings.get("modes", []))
                STATE["random"] = random.Random(settings.get("seed", 1))
        with LOCK:
            self.answer(200, json.dumps(COUNTS).encode(), "application/json")

    def relay(self):
        body = self.body()
        if self.path.startswith("/__faults"):
            return self.control(body)
        fault = pick_fault()
        if fault == "reset":
            # RST instead of FIN: the client sees "connection reset by peer" mid-request.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if fault in ERRORS:
            status, code, message = ERRORS[fault]
            xml = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
            return self.answer(status, xml.encode())
        if fault == "stall":
            time.sleep(3)
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        headers["Content-Length"] = str(len(body))
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Relay)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
