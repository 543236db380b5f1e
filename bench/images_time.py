#!/usr/bin/env python3
"""Timing harness for bench/images.sh.

    images_time.py run MARKER LOG -- COMMAND...   # one run; prints "first_s wall_s cpu_s rc"
    images_time.py report RESULTS.tsv             # the Markdown table and the ratios
    images_time.py phases MARKER LOG...           # median phases of trainyard runs' job logs

`run` starts COMMAND with stdout and stderr on one pipe, writes every line to LOG with the
seconds since the start (so trainyard's own job-log lines can be placed on the same clock),
and records when the first line containing MARKER arrived. CPU is user + sys of COMMAND and of
every descendant it waited for (os.wait4's rusage): daemonised helpers, such as podman's
conmon and what runs under it, are not counted.
"""

import os
import statistics
import subprocess
import sys
import time


def run(marker, log, *cmd):
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    first = None
    with open(log, "w") as out:
        for raw in p.stdout:
            t = time.monotonic() - t0
            line = raw.decode(errors="replace").rstrip("\n")
            out.write(f"{t:9.3f} {line}\n")
            if first is None and marker in line:
                first = t
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    cpu = ru.ru_utime + ru.ru_stime
    print(f"{first if first is not None else -1:.3f} {wall:.3f} {cpu:.3f} {rc}")


def report(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            tool, case, rep, first, wall, cpu, load = line.rstrip("\n").split("\t")
            rows.append((tool, case, int(rep), float(first), float(wall), float(cpu), float(load)))
    tools = []
    for r in rows:
        if r[0] not in tools:
            tools.append(r[0])
    med = {}
    mins = {}
    print("| case | tool | runs | first line: median | min | max | whole command: median | client CPU (median) | load1 (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in ("cold", "warm"):
        for tool in tools:
            rs = [r for r in rows if r[0] == tool and r[1] == case]
            if not rs:
                continue
            first = [r[3] for r in rs]
            med[tool, case] = statistics.median(first)
            mins[tool, case] = min(first)
            print(
                f"| {case} | {tool} | {len(rs)} | {statistics.median(first):.3f} s | {min(first):.3f} s"
                f" | {max(first):.3f} s | {statistics.median([r[4] for r in rs]):.3f} s"
                f" | {statistics.median([r[5] for r in rs]):.2f} s | {statistics.median([r[6] for r in rs]):.2f} |"
            )
    print()
    others = [t for t in tools if t != "trainyard"]
    for other in others:
        for case in ("cold", "warm"):
            if (other, case) in med and ("trainyard", case) in med:
                print(
                    f"- {case}: trainyard/{other} time to first line = "
                    f"{med['trainyard', case] / med[other, case]:.2f}x on medians, "
                    f"{mins['trainyard', case] / mins[other, case]:.2f}x on minimums "
                    f"(below 1 = trainyard faster)"
                )
    if ("trainyard", "warm") in med:
        w = med["trainyard", "warm"]
        print(f"- target warm < 1 s: trainyard median {w:.3f} s: {'met' if w < 1 else 'NOT met'}")
    for other in others:
        for case in ("warm", "cold"):
            if (other, case) in med and ("trainyard", case) in med:
                ok = med["trainyard", case] <= med[other, case]
                print(f"- target {case} no slower than {other}: {'met' if ok else 'NOT met'} (medians)")


# trainyard's job-log lines that end a phase of a start, in order (the first match wins).
PHASES = [
    ("process start to job created (CLI, database)", "trainyard: created training job"),
    ("host set-up (network namespace, cgroup, host tree)", "Downloading the training image"),
    ("resolve: local containers-storage lookup + registry manifest", ": resolved to sha256:"),
    ("layer download + sha256 of the blob", " downloaded"),
    ("gunzip + diff_id sha256 + unpack", ": unpacked "),
    ("image ready to container start", "Training in progress"),
    ("container start (overlay, runc) to the first line", None),
]


def phases(marker, *logs):
    rows = {name: [] for name, _ in PHASES}
    for log in logs:
        with open(log) as f:
            lines = [(float(t), text) for t, _, text in (l.strip().partition(" ") for l in f) if t]
        prev = 0.0
        for name, needle in PHASES:
            key = marker if needle is None else needle
            hit = [t for t, text in lines if key in text]
            if not hit:
                continue  # a warm pull has no download or unpack line
            t = hit[-1] if needle == " downloaded" else hit[0]
            rows[name].append(t - prev)
            prev = t
    print("| phase | median s | runs |")
    print("|---|---|---|")
    for name, _ in PHASES:
        if rows[name]:
            print(f"| {name} | {statistics.median(rows[name]):.3f} | {len(rows[name])} |")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"run": run, "report": report, "phases": phases}[cmd](*args)
