#!/usr/bin/env python3
"""Helpers for bench/file_mode.sh: data generation, verification, free ports, the report.

    helper.py gen DIR SET COUNT SIZE     # DIR/SET/f000000.bin ... and DIR/SET.manifest
    helper.py verify DIR SET MANIFEST [--full]
    helper.py ports N                    # N free loopback TCP ports
    helper.py report RESULTS.tsv         # the table

Content is deterministic (seeded) and incompressible: every file is a sequence of 1 MiB (or
smaller) slices taken at pseudo-random byte offsets of a 64 MiB random pool, preceded by a
header naming the file, so no two files and (almost surely) no two 1 MiB blocks are equal.
That matters because garage stores objects as content-addressed blocks and would otherwise
deduplicate them.
"""

import hashlib
import os
import random
import socket
import statistics
import sys

POOL_SIZE = 64 << 20
SLICE = 1 << 20


def pool():
    return memoryview(random.Random(20261123).randbytes(POOL_SIZE))


def gen(root, name, count, size):
    count, size = int(count), int(size)
    data = pool()
    rng = random.Random(f"{name}-{count}-{size}")
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    width = max(6, len(str(count - 1)))
    manifest = []
    for i in range(count):
        rel = f"f{i:0{width}d}.bin"
        h = hashlib.sha256()
        with open(os.path.join(out, rel), "wb", buffering=0) as f:
            header = f"trainyard-bench {name} {i} {size}\n".encode()[:size]
            f.write(header)
            h.update(header)
            left = size - len(header)
            while left > 0:
                n = min(SLICE, left)
                off = rng.randrange(0, POOL_SIZE - n)
                piece = data[off:off + n]
                f.write(piece)
                h.update(piece)
                left -= n
        manifest.append(f"{rel}\t{size}\t{h.hexdigest()}\n")
    with open(os.path.join(root, f"{name}.manifest"), "w") as f:
        f.writelines(manifest)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(4 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def verify(root, name, manifest, *flags):
    """Checks the file set under ROOT (count, names, sizes; checksums of a sample, or of all
    with --full). Prints one line; exits 1 on any difference."""
    full = "--full" in flags
    expected = {}
    with open(manifest) as f:
        for line in f:
            rel, size, digest = line.rstrip("\n").split("\t")
            expected[rel] = (int(size), digest)
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            p = os.path.join(dirpath, fn)
            found[os.path.relpath(p, root)] = p
    problems = []
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {extra[:3]})")
    total = 0
    for rel, p in found.items():
        if rel in expected:
            st = os.stat(p).st_size
            total += st
            if st != expected[rel][0]:
                problems.append(f"{rel}: size {st} != {expected[rel][0]}")
    keys = sorted(expected)
    sample = keys if full else sorted(set(keys[:: max(1, len(keys) // 16)] + keys[-1:]))
    checked = 0
    for rel in sample:
        if rel in found:
            checked += 1
            if sha256_file(found[rel]) != expected[rel][1]:
                problems.append(f"{rel}: sha256 differs")
    status = "OK" if not problems else "FAILED: " + "; ".join(problems[:5])
    print(f"verify {name}: {len(found)} files, {total} bytes, sha256 of {checked} files: {status}")
    sys.exit(0 if not problems else 1)


def ports(n):
    socks, out = [], []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        out.append(str(s.getsockname()[1]))
    for s in socks:
        s.close()
    print(" ".join(out))


def report(path):
    """RESULTS.tsv rows: tool set rep seconds objects bytes client_cpu server_cpu load1 [self_s]."""
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            p = line.rstrip("\n").split("\t")
            rows.append(p)
    groups = {}
    order = []
    for p in rows:
        key = (p[0], p[1])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(p)
    sets = []
    for _, s in order:
        if s not in sets:
            sets.append(s)
    stats = {}
    for key, ps in groups.items():
        secs = sorted(float(p[3]) for p in ps)
        objs, nbytes = int(ps[0][4]), int(ps[0][5])
        med = statistics.median(secs)
        stats[key] = dict(
            n=len(secs), min=secs[0], med=med, max=secs[-1], objs=objs, bytes=nbytes,
            mbs=nbytes / 1e6 / med, ops=objs / med,
            ccpu=statistics.median(float(p[6]) for p in ps),
            scpu=statistics.median(float(p[7]) for p in ps),
            load=statistics.median(float(p[8]) for p in ps),
        )
    hdr = ("tool", "set", "runs", "min s", "median s", "MB/s", "objects/s",
           "client CPU s", "garage CPU s", "load1", "trainyard/this")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for s in sets:
        ty = stats.get(("trainyard", s))
        for (tool, s2) in order:
            if s2 != s:
                continue
            st = stats[(tool, s)]
            ratio = f"{ty['mbs'] / st['mbs']:.2f}x" if ty and tool != "trainyard" else ""
            ops = f"{st['ops']:.0f}" if st["ops"] >= 10 else f"{st['ops']:.2f}"
            print(f"| {tool} | {s} | {st['n']} | {st['min']:.2f} | {st['med']:.2f} | "
                  f"{st['mbs']:.0f} | {ops} | {st['ccpu']:.1f} | {st['scpu']:.1f} | "
                  f"{st['load']:.2f} | {ratio} |")
    print()
    targets = {"small": 1.3, "large": 1.0}
    for s in sets:
        ty, s5 = stats.get(("trainyard", s)), stats.get(("s5cmd", s))
        if not (ty and s5):
            continue
        r_med = ty["mbs"] / s5["mbs"]
        r_min = s5["min"] / ty["min"]
        t = targets.get(s)
        verdict = "" if t is None else (f" (target >= {t}x: {'met' if r_med >= t else 'NOT met'})")
        print(f"trainyard/s5cmd throughput, {s}: {r_med:.2f}x on medians, "
              f"{r_min:.2f}x on best runs{verdict}")
        # On a small shared machine the client and the server compete for the same cores, so
        # the CPU both spend per run (client + garage) predicts the ratio at equal CPU share.
        cpu_ty, cpu_s5 = ty["ccpu"] + ty["scpu"], s5["ccpu"] + s5["scpu"]
        print(f"  CPU per run (client + garage): trainyard {cpu_ty:.1f} s, s5cmd {cpu_s5:.1f} s "
              f"-> {cpu_s5 / cpu_ty:.2f}x at equal CPU")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"gen": gen, "verify": verify, "ports": ports, "report": report}[cmd](*args)
