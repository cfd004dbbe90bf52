#!/usr/bin/env python3
"""Alternating runs of two or more netwatch builds on the compare.sh capture.

Compares builds where compare.sh's one-build medians cannot: each round runs
every build once, in turn (the order reversed every other round), so a noisy
phase of the machine falls on all of them alike.

    benches/alternate.py wall  N BIN...   # wall and CPU time (wait4), medians
    benches/alternate.py stages N BIN...  # -vv stage times (ms since logging
                                          # started) and the tail, medians

COMMAND=flows runs `flows` instead of `evaluate`. WORK is compare.sh's work
directory (default /tmp/nwc-full: run `WORK=/tmp/nwc-full KEEP=1
benches/compare.sh` once to build the capture and the resources). A BIN
written `PATH@NAME=VALUE` runs PATH with that environment variable set.
"""
import os
import statistics
import subprocess
import sys
import time

WORK = os.environ.get("WORK", "/tmp/nwc-full")
COMMAND = os.environ.get("COMMAND", "evaluate")
STAGES = [
    ("resources loaded", "load"),
    ("NSG rules compiled", "compiled"),
    ("decoding thread done", "decoded"),
    ("capture read", "tracked"),
    ("flows live at the end", "ended"),
    ("summary written", "summary"),
    ("DEBUG done", "done"),
]


def argv(path, verbose):
    cmd = [path] + (["-vv"] if verbose else [])
    if COMMAND == "flows":
        return cmd + ["flows", f"{WORK}/capture.pcap", "-o", "jsonl"]
    return cmd + [
        "evaluate", "--resources", f"{WORK}/resources", "--nic", "nic-bench",
        "--local", "0.0.0.0/1", "--local", "::/1", f"{WORK}/capture.pcap", "-o", "jsonl",
    ]


def split(build):
    path, _, env = build.partition("@")
    e = dict(os.environ)
    if env:
        k, _, v = env.partition("=")
        e[k] = v
    return path, e


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("wall", "stages"):
        sys.exit(__doc__)
    mode, n, builds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if not os.path.exists(f"{WORK}/capture.pcap"):
        sys.exit(f"{WORK}/capture.pcap not found: run WORK={WORK} KEEP=1 benches/compare.sh first")
    got = {b: {} for b in builds}
    for i in range(n):
        for b in builds if i % 2 == 0 else builds[::-1]:
            path, env = split(b)
            t0 = time.perf_counter()
            if mode == "wall":
                p = subprocess.Popen(argv(path, False), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                got[b].setdefault("wall", []).append((time.perf_counter() - t0) * 1000)
                got[b].setdefault("cpu", []).append((ru.ru_utime + ru.ru_stime) * 1000)
            else:
                p = subprocess.run(argv(path, True), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                got[b].setdefault("wall", []).append((time.perf_counter() - t0) * 1000)
                for line in p.stderr.splitlines():
                    for pattern, key in STAGES:
                        if pattern in line:
                            got[b].setdefault(key, []).append(float(line.split()[0].rstrip("s")) * 1000)
            if p.returncode != 0:
                sys.exit(f"{path} exited {p.returncode}")
    for b in builds:
        m = {k: statistics.median(v) for k, v in got[b].items()}
        if mode == "wall":
            print(f"{b:30s} wall {m['wall']:6.1f} ms (min {min(got[b]['wall']):5.1f})  cpu {m['cpu']:6.1f} ms")
        else:
            stages = " ".join(f"{k} {m[k]:5.1f}" for _, k in STAGES if k in m)
            tail = m.get("done", 0) - m.get("tracked", 0)
            print(f"{b:30s} {stages}  tail {tail:4.1f}  wall {m['wall']:5.1f}")


if __name__ == "__main__":
    main()
