#!/usr/bin/env python3
"""The soak workload: a mixed load on two Berth servers that share their stores, for MINUTES.

    SOAK_KEY_ID=… SOAK_SECRET=… workload.py MINUTES ADDR_A PID_A ADDR_B PID_B REPORT_JSON

Writers push small images through A (monolithic blob uploads, then the manifest); readers pull
through B whatever was pushed (manifest by tag, then its layer, checking the bytes); a deleter
removes older images by digest; a lifecycle policy keeps each repository small; both servers run
GC on their own. All of it signs in with the access key SOAK_KEY_ID / SOAK_SECRET (HTTP Basic).

In the middle sixth of the run (at least 10 s), hostile clients (hostile.py) attack both servers
as well: large bodies without credentials or with forged signatures, oversized, junk, trickled
and cut-off manifests, uploads abandoned mid-PATCH. Every second it samples each server's RSS and
open file descriptors from /proc; each operation's latencies are kept. The report has per-minute
p99s, the samples, the hostile clients' answers and every error. The run fails on any friendly
error or wrong byte, a hostile request answered other than with its 4xx (never a 5xx), or a server
whose memory or descriptors are not flat: after warm-up (the first third) the baseline is the
maximum before the attack; during it RSS may rise by at most HOSTILE_PEAK_MIB over that, and
after it must be back within a quarter plus 16 MiB of it, descriptors within 32. The attack ends
when its last request in flight has (a 20 MiB body can outlast the hostile window by seconds);
the "after" window starts SETTLE seconds later.
"""

import base64
import hashlib
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request

from hostile import Hostile

MINUTES = float(sys.argv[1])
SERVERS = {"a": (sys.argv[2], int(sys.argv[3])), "b": (sys.argv[4], int(sys.argv[5]))}
REPORT = sys.argv[6]
REPOS = [f"soak/app{i}" for i in range(4)]
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
KEY_ID, SECRET = os.environ["SOAK_KEY_ID"], os.environ["SOAK_SECRET"]
AUTHORIZATION = "Basic " + base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
WARM_UP = MINUTES * 60 / 3
HOSTILE_START = MINUTES * 60 / 2
HOSTILE_END = HOSTILE_START + max(10.0, MINUTES * 60 / 6)
# The servers were seen to hand a burst's memory back about 5 s after the attack's last request
# (30 → 22 MiB in one step); the after window starts twice that later.
SETTLE = 10.0
# What the attack may add to RSS while it lasts: the ECR plane's 64 MiB budget for bodies whose
# signature is unchecked, plus manifests (at most 4 MiB each) of the authenticated hostile clients.
HOSTILE_PEAK_MIB = 112

lock = threading.Lock()
pushed = {repo: [] for repo in REPOS}  # (tag, digest, layer) of acknowledged pushes
latencies = {}  # (minute, operation) -> [seconds]
errors = []
counts = {}
stop = threading.Event()
started = time.monotonic()


def request(server, method, path, body=None, headers=None):
    headers = {"Authorization": AUTHORIZATION, **(headers or {})}
    req = urllib.request.Request(f"http://{SERVERS[server][0]}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def timed(operation, expected, server, method, path, body=None, headers=None):
    t0 = time.monotonic()
    status, response_headers, data = request(server, method, path, body, headers)
    elapsed = time.monotonic() - t0
    minute = int((t0 - started) // 60)
    with lock:
        latencies.setdefault((minute, operation), []).append(elapsed)
        counts[operation] = counts.get(operation, 0) + 1
        if status not in expected:
            errors.append(f"{operation} {method} {path}: {status} {data[:200]!r}")
    return status, response_headers, data


def blob(server, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    timed("blob push", (201,), server, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
          {"Content-Type": "application/octet-stream"})
    return {"digest": digest, "size": len(data)}


def writer(seed):
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        repo = rng.choice(REPOS)
        layer = rng.randbytes(rng.randint(1000, 200_000))
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed, "n": n}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": dict(blob("a", repo, config), mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [dict(blob("a", repo, layer), mediaType="application/vnd.oci.image.layer.v1.tar")],
        }).encode()
        tag = f"w{seed}-{n}"
        status, _, _ = timed("manifest push", (201,), "a", "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                             {"Content-Type": MANIFEST})
        if status == 201:
            digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            with lock:
                pushed[repo].append((tag, digest, layer))
        n += 1


def reader(seed):
    rng = random.Random(seed)
    while not stop.is_set():
        repo = rng.choice(REPOS)
        with lock:
            images = list(pushed[repo][-20:])
        if not images:
            time.sleep(0.05)
            continue
        tag, digest, layer = rng.choice(images)
        # The image may have been deleted or expired meanwhile: 404 is a fine answer, a wrong body is not.
        status, _, data = timed("manifest pull", (200, 404), "b", "GET", f"/v2/{repo}/manifests/{tag}",
                                headers={"Accept": MANIFEST})
        if status != 200:
            continue
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            with lock:
                errors.append(f"{repo}:{tag} pulled a different manifest")
            continue
        layer_digest = json.loads(data)["layers"][0]["digest"]
        status, _, got = timed("blob pull", (200, 404), "b", "GET", f"/v2/{repo}/blobs/{layer_digest}")
        if status == 200 and got != layer:
            with lock:
                errors.append(f"{repo}:{tag} layer bytes differ")


def deleter():
    rng = random.Random(99)
    while not stop.wait(1.0):
        repo = rng.choice(REPOS)
        with lock:
            victim = pushed[repo].pop(0) if len(pushed[repo]) > 30 else None
        if victim:
            timed("manifest delete", (202, 404), rng.choice("ab"), "DELETE", f"/v2/{repo}/manifests/{victim[1]}")
        timed("tags list", (200,), "b", "GET", f"/v2/{repo}/tags/list")


def proc(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss // 1024, len(os.listdir(f"/proc/{pid}/fd"))


samples = []


def take_sample():
    now = time.monotonic() - started
    samples.append({"t": round(now, 1), **{f"{name}_{k}": v for name, (_, pid) in SERVERS.items()
                                              for k, v in zip(("rss_mib", "fds"), proc(pid))}})


def sampler():
    while True:
        take_sample()
        if stop.wait(1.0):
            break


def attack():
    """The hostile phase: hostile.py's clients against both servers, the known-key forgery eight
    times over (unbudgeted, eight 20 MiB bodies at once would be far past HOSTILE_PEAK_MIB)."""
    if stop.wait(HOSTILE_START):
        return
    attackers = [Hostile(addr, KEY_ID, f"{KEY_ID}:{SECRET}", REPOS[0], threads_per_kind=1, heavy_threads=8)
                 for addr, _ in SERVERS.values()]
    for attacker in attackers:
        attacker.start()
    stop.wait(HOSTILE_END - HOSTILE_START)
    for attacker in attackers:
        attacker.finish()
    # Requests in flight at HOSTILE_END (20 MiB bodies, trickles) finish first: until then the
    # attack is not over, and its memory not yet free.
    attack_over.append(time.monotonic() - started)
    for attacker in attackers:
        with lock:
            errors.extend(attacker.errors[:20])
            for kind, answers in attacker.answers.items():
                merged = hostile_answers.setdefault(kind, {})
                for outcome, n in answers.items():
                    merged[outcome] = merged.get(outcome, 0) + n


hostile_answers = {}
attack_over = []
threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
threads += [threading.Thread(target=reader, args=(10 + i,)) for i in range(4)]
threads += [threading.Thread(target=deleter), threading.Thread(target=sampler), threading.Thread(target=attack)]
for t in threads:
    t.start()
time.sleep(MINUTES * 60)
stop.set()
for t in threads:
    t.join()

p99 = {}
for (minute, operation), values in sorted(latencies.items()):
    values.sort()
    p99.setdefault(operation, []).append(round(values[int(len(values) * 0.99) - 1 if len(values) > 1 else 0] * 1000, 1))
settled = max([HOSTILE_END, *attack_over]) + SETTLE
# An attack that ended late (its sockets time out after 30 s) leaves the after window short: sample
# on until it holds a few seconds.
while time.monotonic() - started < settled + 5:
    take_sample()
    time.sleep(1.0)
windows = {
    "baseline": [s for s in samples if WARM_UP <= s["t"] < HOSTILE_START],
    "attack": [s for s in samples if HOSTILE_START <= s["t"] < settled],
    "after": [s for s in samples if s["t"] >= settled],
}
verdicts = []
for name in SERVERS:
    top = {window: {k: max(s[f"{name}_{k}"] for s in chosen) for k in ("rss_mib", "fds")}
           for window, chosen in windows.items()}
    base, attack_peak, after = top["baseline"], top["attack"], top["after"]
    checks = {
        "rss bounded under attack": attack_peak["rss_mib"] <= base["rss_mib"] + HOSTILE_PEAK_MIB,
        "rss flat after attack": after["rss_mib"] <= base["rss_mib"] * 1.25 + 16,
        "fds flat after attack": after["fds"] <= base["fds"] + 32,
    }
    verdicts.append({"server": name, "rss_baseline_mib": base["rss_mib"], "rss_attack_peak_mib": attack_peak["rss_mib"],
                     "rss_after_mib": after["rss_mib"], "fds_baseline": base["fds"], "fds_attack_peak": attack_peak["fds"],
                     "fds_after": after["fds"], "failed": [check for check, passed in checks.items() if not passed]})
report = {"minutes": MINUTES, "load_average": os.getloadavg(), "operations": counts, "p99_ms_per_minute": p99,
          "hostile_window_s": [HOSTILE_START, HOSTILE_END], "after_from_s": round(settled, 1), "hostile_answers": hostile_answers,
          "errors": errors[:50], "error_count": len(errors), "servers": verdicts, "samples": samples}
with open(REPORT, "w") as f:
    json.dump(report, f, indent=1)
print(json.dumps({k: report[k] for k in ("load_average", "operations", "p99_ms_per_minute", "hostile_answers", "errors",
                                         "error_count", "servers")}, indent=1))
sys.exit(0 if not errors and not any(v["failed"] for v in verdicts) else 1)
