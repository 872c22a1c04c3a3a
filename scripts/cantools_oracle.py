#!/usr/bin/env python3
"""Reference answers from cantools, for differential tests.

    cantools_oracle.py dump-dbc FILE [--strict|--lenient]
    cantools_oracle.py dump-dbc-batch FILE...

`dump-dbc` prints the database as JSON, or {"error": "..."} when cantools cannot load it.
`dump-dbc-batch` prints one JSON line per file, {"file", "mode", ...database} after trying strict
then lenient loading (one Python start for all files: importing cantools is the slow part). The file is
decoded like our loader does (UTF-8 when valid, else cp1252), then given to cantools as a string.
"""
import json
import sys

import cantools


def decode(path):
    data = open(path, "rb").read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # cp1252 with the five undefined bytes mapped to the C1 control of the same value.
        return "".join(
            bytes([b]).decode("cp1252") if b < 0x80 or b > 0x9F or b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
            else chr(b)
            for b in data
        )


def num(v):
    """A float as its shortest round-trip text ("0.1", "inf"): JSON has no literal for non-finite
    numbers, and some JSON readers (serde_json by default) do not round decimals correctly."""
    if v is None:
        return None
    return repr(float(v))


def dump_signal(s):
    choices = None
    if s.choices:
        choices = {str(int(k)): str(v) for k, v in s.choices.items()}
    return {
        "name": s.name,
        "start": s.start,
        "length": s.length,
        "byte_order": s.byte_order,
        "is_signed": s.is_signed,
        "is_float": s.is_float,
        "scale": num(s.scale),
        "offset": num(s.offset),
        "minimum": num(s.minimum),
        "maximum": num(s.maximum),
        "unit": s.unit,
        "choices": choices,
        "is_multiplexer": s.is_multiplexer,
        "multiplexer_ids": sorted(s.multiplexer_ids) if s.multiplexer_ids else None,
        "multiplexer_signal": s.multiplexer_signal,
        "initial": num(s.raw_initial),
        "receivers": list(s.receivers),
    }


def dump_dbc(path, strict):
    try:
        db = cantools.database.load_string(decode(path), database_format="dbc", strict=strict)
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return {"error": f"{type(e).__name__}: {e}"}
    return {
        "messages": [
            {
                "frame_id": m.frame_id,
                "is_extended_frame": m.is_extended_frame,
                "name": m.name,
                "length": m.length,
                "senders": list(m.senders),
                "cycle_time": m.cycle_time,
                "is_fd": m.is_fd,
                "signals": [dump_signal(s) for s in m.signals],
            }
            for m in db.messages
        ]
    }


def main(argv):
    if len(argv) >= 1 and argv[0] == "dump-dbc-batch":
        for path in argv[1:]:
            out = dump_dbc(path, True)
            mode = "strict"
            if "error" in out:
                out = dump_dbc(path, False)
                mode = "lenient"
            out["file"] = path
            out["mode"] = mode
            print(json.dumps(out))
        return 0
    if len(argv) < 2 or argv[0] != "dump-dbc":
        print(__doc__, file=sys.stderr)
        return 2
    strict = "--lenient" not in argv[2:]
    json.dump(dump_dbc(argv[1], strict), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
