"""Hostile clients for the soak (tests/soak/workload.py imports this; `python3 hostile.py ADDR PID
KEY_ID KEY_ID:SECRET SECONDS [KIND]` runs them, or only the kinds whose name contains KIND, alone
against one server and prints its RSS before, at the peak and for 10 s after).

Each client is a loop over raw sockets, so it can send what an attacker would: large bodies
without credentials, or with a known access key id and a forged signature; bodies that stop
half-way or trickle in; oversized and junk manifests; uploads abandoned mid-PATCH. Clients without
valid credentials connect from their own loopback address (127.0.0.N), so the per-address
throttle of failed sign-ins that they set off does not touch the friendly load on 127.0.0.1.
Every answer is recorded by status; a 5xx is an error, and so is a refused request that the
server did not refuse before reading its whole body when it should have.
"""

import base64
import hashlib
import json
import os
import select
import socket
import sys
import threading
import time

MIB = 1 << 20
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
JUNK = os.urandom(MIB)  # what every junk body is cut from


def _body(size):
    return (JUNK * (size // len(JUNK) + 1))[:size]


class Attempt:
    """One raw HTTP/1.1 request: the head, then up to `send` bytes of a body that declares
    `declared` bytes (None: chunked), `pace` seconds between 64 KiB pieces, then either the answer
    or, with `cut`, an abrupt close."""

    def __init__(self, addr, source, method, path, headers, declared, send=None, pace=0.0, cut=False, piece=64 * 1024):
        self.addr, self.source = addr, source
        self.method, self.path, self.headers = method, path, headers
        self.declared, self.send = declared, declared if send is None else send
        self.pace, self.cut, self.piece = pace, cut, piece
        self.sent = 0

    def run(self, stop):
        host, port = self.addr.rsplit(":", 1)
        try:
            sock = socket.create_connection((host, int(port)), timeout=30, source_address=(self.source, 0))
        except OSError as e:
            return f"connect failed: {e}"
        try:
            head = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.addr}"]
            head += [f"{k}: {v}" for k, v in self.headers.items()]
            head.append(f"Content-Length: {self.declared}")
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            body = _body(min(self.send, 4 * MIB))
            while self.sent < self.send:
                if stop.is_set():
                    return "stopped"
                # An answer before the body is done: the server refused without reading on.
                if select.select([sock], [], [], 0)[0]:
                    break
                piece = min(self.piece, self.send - self.sent)
                offset = self.sent % len(body)
                sock.sendall(body[offset:offset + piece] if offset + piece <= len(body) else _body(piece))
                self.sent += piece
                if self.pace:
                    time.sleep(self.pace)
            if self.cut and self.sent >= self.send:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return "cut"
            return self._status(sock)
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
        except TimeoutError:
            return "timeout"
        finally:
            sock.close()

    @staticmethod
    def _status(sock):
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed"
            data += chunk
        return int(data.split(b" ", 2)[1])


def ecr_headers(operation, authorization=None):
    headers = {"X-Amz-Target": ECR_TARGET + operation, "Content-Type": "application/x-amz-json-1.1",
               "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())}
    if authorization:
        headers["Authorization"] = authorization
    return headers


def forged(key_id):
    """A well-formed SigV4 header for a real access key id, with a signature made up."""
    day = time.strftime("%Y%m%d", time.gmtime())
    return (f"AWS4-HMAC-SHA256 Credential={key_id}/{day}/us-east-1/ecr/aws4_request, "
            f"SignedHeaders=host;x-amz-date;x-amz-target, Signature={'0' * 64}")


def basic(creds):
    return "Basic " + base64.b64encode(creds.encode()).decode()


# Each kind: (source address or None for 127.0.0.1, the statuses that are right, a function that
# makes the next attempt). "closed" means the server ended the connection without an answer,
# which is right only where it refused unread (hyper closes after answering early).
def kinds(addr, key_id, creds, repo):
    auth = {"Authorization": basic(creds)}
    manifest = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    fake = "sha256:" + "0" * 64
    return {
        # Unauthenticated: refused from the headers, the body never read.
        "ecr: 20 MiB UploadLayerPart without credentials": (
            "127.0.0.2", {400, "closed"},
            lambda: Attempt(addr, "127.0.0.2", "POST", "/", ecr_headers("UploadLayerPart"), 20 * MIB)),
        "ecr: 20 MiB PutImage signed by an unknown key": (
            "127.0.0.3", {400, "closed"},
            lambda: Attempt(addr, "127.0.0.3", "POST", "/", ecr_headers("PutImage", forged("AKIAUNKNOWNKEY000000")),
                            20 * MIB)),
        "ecr: 20 MiB UploadLayerPart with a known key, forged signature": (
            "127.0.0.4", {400, "closed"},
            lambda: Attempt(addr, "127.0.0.4", "POST", "/", ecr_headers("UploadLayerPart", forged(key_id)), 20 * MIB)),
        "v2: 20 MiB monolithic upload without credentials": (
            "127.0.0.5", {401, "closed"},
            lambda: Attempt(addr, "127.0.0.5", "POST", f"/v2/{repo}/blobs/uploads/?digest={fake}",
                            {"Content-Type": "application/octet-stream"}, 20 * MIB)),
        "v2: 8 MiB manifest without credentials": (
            "127.0.0.6", {401, "closed"},
            lambda: Attempt(addr, "127.0.0.6", "PUT", f"/v2/{repo}/manifests/hostile", manifest, 8 * MIB)),
        # Authenticated but hostile: what they can make the server hold is bounded by its limits.
        "v2: 5 MiB manifest (over the 4 MiB limit)": (
            None, {413, "closed"},
            lambda: Attempt(addr, "127.0.0.1", "PUT", f"/v2/{repo}/manifests/hostile", {**manifest, **auth}, 5 * MIB)),
        "v2: 1 MiB junk manifest": (
            None, {400},
            lambda: Attempt(addr, "127.0.0.1", "PUT", f"/v2/{repo}/manifests/hostile", {**manifest, **auth}, MIB)),
        "v2: manifest trickled, then cut off": (
            None, {"cut"},
            lambda: Attempt(addr, "127.0.0.1", "PUT", f"/v2/{repo}/manifests/hostile", {**manifest, **auth},
                            256 * 1024, send=128 * 1024, pace=0.05, cut=True, piece=8 * 1024)),
        "v2: upload PATCH of 16 MiB cut off at 8 MiB": (None, {"cut"}, None),  # needs a session: see patch_cut
    }


def patch_cut(addr, creds, repo, stop):
    """Opens an upload session, sends half of a PATCH's declared body and hangs up: the append
    must roll back. The session is left behind (it expires)."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        sock.sendall((f"POST /v2/{repo}/blobs/uploads/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {basic(creds)}\r\n"
                      "Content-Length: 0\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed"
            data += chunk
        status = int(data.split(b" ", 2)[1])
        if status != 202:
            return status
        location = next(line.split(b":", 1)[1].strip().decode() for line in data.split(b"\r\n")
                        if line.lower().startswith(b"location:"))
    finally:
        sock.close()
    path = location.split(addr, 1)[-1]
    return Attempt(addr, "127.0.0.1", "PATCH", path, {"Authorization": basic(creds),
                   "Content-Type": "application/octet-stream"}, 16 * MIB, send=8 * MIB, cut=True).run(stop)


class Hostile:
    """Runs every kind in its own threads against `addr` until stopped; counts answers."""

    def __init__(self, addr, key_id, creds, repo, threads_per_kind=2, heavy_threads=None):
        self.addr, self.creds, self.repo = addr, creds, repo
        self.kinds = kinds(addr, key_id, creds, repo)
        self.threads_per_kind = threads_per_kind
        # The one kind whose body the server must read before it can refuse it gets more threads.
        self.heavy_threads = heavy_threads or threads_per_kind
        self.lock = threading.Lock()
        self.answers = {}  # kind -> {status: count}
        self.errors = []
        self.stop = threading.Event()
        self.threads = []

    def _loop(self, name):
        _, expected, make = self.kinds[name]
        while not self.stop.is_set():
            try:
                outcome = make().run(self.stop) if make else patch_cut(self.addr, self.creds, self.repo, self.stop)
            except OSError as e:
                outcome = f"error: {e}"
            with self.lock:
                answers = self.answers.setdefault(name, {})
                answers[str(outcome)] = answers.get(str(outcome), 0) + 1
                if outcome not in expected and not self.stop.is_set():
                    self.errors.append(f"hostile {name}: {outcome}")

    def start(self):
        for name in self.kinds:
            for _ in range(self.heavy_threads if "known key" in name else self.threads_per_kind):
                thread = threading.Thread(target=self._loop, args=(name,), daemon=True)
                thread.start()
                self.threads.append(thread)

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) // 1024


if __name__ == "__main__":
    addr, pid, key_id, creds, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    hostile = Hostile(addr, key_id, creds, "soak/app0")
    if len(sys.argv) > 6:
        hostile.kinds = {k: v for k, v in hostile.kinds.items() if sys.argv[6] in k}
    print("rss before", rss_mib(pid))
    hostile.start()
    end = time.monotonic() + seconds
    peak = 0
    while time.monotonic() < end:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.5)
    hostile.finish()
    print("rss peak", peak)
    for _ in range(10):
        time.sleep(1)
        print("rss after", rss_mib(pid))
    print(json.dumps(hostile.answers, indent=1))
    print("\n".join(hostile.errors[:20]))
