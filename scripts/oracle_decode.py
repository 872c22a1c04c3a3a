#!/usr/bin/env python3
"""Decode CAN frames with cantools, the reference our decoder is compared against.

  oracle_decode.py trace --dbc FILE --trace FILE.log[.gz] [--j1939]
      one JSON object per candump line: {"i", "t_ns", "id", "ext", "msg", "sig", "choice", "sa"}
  oracle_decode.py frames
      reads lines "DBC_PATH<TAB>ID<TAB>EXT(0/1)<TAB>HEX" (ID without the extended bit) on stdin, prints one JSON object a line:
      {"msg": name|null, "sig": {...}} or {"msg": name, "error": "..."} when cantools refuses.

Values are printed with repr(), which round-trips every float exactly. Signal values are raw
numbers (decode_choices=False); labels come from the signal's choices.
"""
import argparse
import gzip
import json
import sys

import cantools


def load(path, cache={}):
    """The database, strictly loaded if cantools can, else leniently, else None."""
    if path not in cache:
        cache[path] = None
        # cantools reads every DBC as cp1252 by default; we read UTF-8 when the file is valid
        # UTF-8 (opendbc's are) and cp1252 otherwise. Give cantools the same text.
        with open(path, "rb") as f:
            raw = f.read()
        try:
            raw.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1252"
        for strict in (True, False):
            try:
                cache[path] = cantools.database.load_file(
                    path, database_format="dbc", encoding=encoding, strict=strict)
                break
            except Exception:
                continue
    return cache[path]


def choices_of(message, data, **kw):
    """Value-table labels exactly as cantools picks them (on the raw value), via decode_choices."""
    named = message.decode(data, decode_choices=True, **kw)
    return {k: str(v) for k, v in named.items() if not isinstance(v, (int, float))}


def plain(v):
    # cantools may return ints, floats or NamedSignalValue; keep numbers.
    return v if isinstance(v, (int, float)) else float(v)


def parse_candump(line):
    # "(1627274455.012500) can1 17F00010#2010000000000000 R" (the fixture traces use this subset)
    ts, iface, frame = line.split()[:3]
    secs, frac = ts.strip("()").split(".")
    t_ns = int(secs) * 1_000_000_000 + int(frac.ljust(9, "0"))
    ident, data = frame.split("#", 1)
    ext = len(ident) == 8
    return t_ns, iface, int(ident, 16), ext, bytes.fromhex(data.replace(".", ""))


def by_pgn(db):
    table = {}
    for m in db.messages:
        if m.is_extended_frame:
            table.setdefault(pgn(m.frame_id), m)
    return table


def pgn(frame_id):
    pf = (frame_id >> 16) & 0xFF
    return (frame_id >> 8) & (0x3FFFF if pf >= 240 else 0x3FF00)


def cmd_trace(args):
    db = load(args.dbc)
    pgns = by_pgn(db) if args.j1939 else {}
    opener = gzip.open if args.trace.endswith(".gz") else open
    out = sys.stdout
    with opener(args.trace, "rt") as f:
        i = 0
        for line in f:
            if not line.startswith("("):
                continue
            t_ns, iface, ident, ext, data = parse_candump(line)
            rec = {"i": i, "t_ns": t_ns, "id": ident, "ext": ext, "msg": None}
            try:
                message = db.get_message_by_frame_id(ident)
                if message.is_extended_frame != ext:
                    message = None
            except KeyError:
                message = None
            if message is None and ext and args.j1939:
                message = pgns.get(pgn(ident))
                if message is not None:
                    rec["sa"] = ident & 0xFF
            if message is not None:
                rec["msg"] = message.name
                values = message.decode(data, decode_choices=False, allow_truncated=True)
                rec["sig"] = {k: plain(v) for k, v in values.items()}
                rec["choice"] = choices_of(message, data, allow_truncated=True)
            out.write(json.dumps(rec) + "\n")
            i += 1


def cmd_frames(_args):
    for line in sys.stdin:
        path, ident, ext, data = line.rstrip("\n").split("\t")
        db = load(path)
        ident = int(ident)
        rec = {"msg": None}
        try:
            message = db.get_message_by_frame_id(ident) if db is not None else None
        except KeyError:
            message = None
        # The extended flag is not compared: cantools keeps ids above 0x7FF without bit 31 as
        # standard, where we (like opendbc) read them as extended; the payload layout is the same.
        if message is not None:
            rec["msg"] = message.name
            try:
                payload = bytes.fromhex(data)
                values = message.decode(payload, decode_choices=False)
                rec["sig"] = {k: plain(v) for k, v in values.items()}
                rec["choice"] = choices_of(message, payload)
            except Exception as e:  # cantools refuses, e.g. an unknown multiplexer value
                rec["error"] = f"{type(e).__name__}: {e}"
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trace")
    t.add_argument("--dbc", required=True)
    t.add_argument("--trace", required=True)
    t.add_argument("--j1939", action="store_true")
    sub.add_parser("frames")
    args = p.parse_args()
    {"trace": cmd_trace, "frames": cmd_frames}[args.cmd](args)


if __name__ == "__main__":
    main()
