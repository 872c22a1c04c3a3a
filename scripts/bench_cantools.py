#!/usr/bin/env python3
"""cantools' decode speed on the same frames our benchmark decodes, for a side-by-side figure.

  bench_cantools.py --dbc FILE --trace FILE.log[.gz] [--seconds S]

Frames are parsed up front (candump -L); only db.decode_message() is timed, one core, repeated
until S seconds have passed. Prints one line: "cantools_frames_per_cpu_s <N> frames <count> wall_frames_per_s <M>".
"""
import argparse
import gzip
import time

import cantools


def frames(path):
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt") as f:
        for line in f:
            if not line.startswith("("):
                continue
            _, _, frame = line.split()[:3]
            ident, data = frame.split("#", 1)
            out.append((int(ident, 16), bytes.fromhex(data.replace(".", "").lstrip("#")[0:128])))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dbc", required=True)
    p.add_argument("--trace", required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args()
    try:
        db = cantools.database.load_file(args.dbc, strict=True)
    except Exception:
        db = cantools.database.load_file(args.dbc, strict=False)
    fs = frames(args.trace)
    decode = db.decode_message
    done = 0
    start = time.perf_counter()
    cpu0 = time.thread_time()
    while True:
        for ident, data in fs:
            try:
                decode(ident, data, decode_choices=False, allow_truncated=True)
            except (KeyError, Exception):
                pass
        done += len(fs)
        elapsed = time.perf_counter() - start
        if elapsed >= args.seconds:
            break
    cpu = time.thread_time() - cpu0
    print(f"cantools_frames_per_cpu_s {done / cpu:.0f} frames {done} wall_frames_per_s {done / elapsed:.0f}")


if __name__ == "__main__":
    main()
