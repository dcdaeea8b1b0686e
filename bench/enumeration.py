#!/usr/bin/env python3
"""Can response times tell who has an account? (issue 15, item 5)

Starts the release server on a fresh SQLite directory, registers an account, gives
a second account a long history (many logins), then times, interleaved, N requests
each of:

  reset:  POST /api/auth/password-reset/ for a real address / an unknown one
  login:  a wrong password for a real account / an unknown one
  long:   a wrong password for the account with the long history / a fresh one

and prints median, p90 and mean per case. Only the standard library.

  cargo build --release -p medledger-api
  python3 bench/enumeration.py [--samples 100] [--history 2000] [--fast-hash]
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "correct horse battery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return status, (time.perf_counter() - started) * 1000


def summary(ms):
    ms = sorted(ms)
    return f"median {statistics.median(ms):7.2f} ms  p90 {ms[int(len(ms) * 0.9) - 1]:7.2f} ms  mean {statistics.fmean(ms):7.2f} ms"


def compare(name, base, a_label, a, b_label, b, samples):
    times = {a_label: [], b_label: []}
    for _ in range(samples):
        pair = [(a_label, a), (b_label, b)]
        random.shuffle(pair)
        for label, (path, body, expected) in pair:
            status, ms = post(base, path, body)
            if status != expected:
                sys.exit(f"{name} {label}: status {status}, expected {expected}")
            times[label].append(ms)
    print(f"{name}:")
    for label in (a_label, b_label):
        print(f"  {label:<28} {summary(times[label])}")
    ratio = statistics.median(times[a_label]) / statistics.median(times[b_label])
    print(f"  median ratio {a_label} / {b_label}: {ratio:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--history", type=int, default=2000, help="logins recorded on the long-history account")
    ap.add_argument("--fast-hash", action="store_true", help="cheap argon2 (shows the rest of the work more sharply)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/medledger"))
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="medledger-enum-")
    port = free_port()
    env = dict(os.environ, MEDLEDGER_DATA_DIR=data, PORT=str(port), MEDLEDGER_BIND="127.0.0.1",
               MEDLEDGER_AUTH_RATE_LIMIT="0", MEDLEDGER_API_RATE_LIMIT="0", RUST_LOG="warn")
    if args.fast_hash:
        env["MEDLEDGER_FAST_PASSWORD_HASH"] = "1"
    server = subprocess.Popen([args.binary, "serve"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/api/health").read()
                break
            except Exception:
                time.sleep(0.05)
        for email in ("known@example.org", "long@example.org", "fresh@example.org"):
            status, _ = post(base, "/api/auth/register/", {"email": email, "password": PASSWORD})
            assert status == 201, status
        for _ in range(args.history):
            post(base, "/api/auth/login/", {"email": "long@example.org", "password": PASSWORD})
        print(f"{args.samples} samples each, interleaved in random order; argon2 {'fast' if args.fast_hash else 'recommended'}; "
              f"long history = {args.history} logins")
        compare("password reset", base,
                "real address", ("/api/auth/password-reset/", {"email": "known@example.org"}, 200),
                "unknown address", ("/api/auth/password-reset/", {"email": "nobody@example.org"}, 200), args.samples)
        compare("failed login", base,
                "real account, wrong password", ("/api/auth/login/", {"email": "known@example.org", "password": "wrong password"}, 401),
                "unknown account", ("/api/auth/login/", {"email": "nobody@example.org", "password": "wrong password"}, 401), args.samples)
        compare("failed login by history length", base,
                f"{args.history} logins of history", ("/api/auth/login/", {"email": "long@example.org", "password": "wrong password"}, 401),
                "fresh account", ("/api/auth/login/", {"email": "fresh@example.org", "password": "wrong password"}, 401), args.samples)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
