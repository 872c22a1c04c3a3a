#!/usr/bin/env python3
"""Differential-test oracle: print every message python-can reads from a trace, one JSON line each.

Usage: pycan_oracle.py FILE [--absolute]
       pycan_oracle.py --convert SRC DEST [--limit N]

The second form rewrites the first N messages (default all) of SRC with python-can's own writer
for DEST's extension (e.g. .blf, .asc), so our readers can be checked on files python-can wrote.

ASC files are read with python-can's default relative timestamps (seconds from the trigger block
start) unless --absolute is given; then the trigger block date is applied in UTC (TZ is forced to
UTC so the result does not depend on the machine). BLF timestamps are always absolute (UTC).
`timestamp` is the exact repr of python-can's float. If python-can raises, a final line
{"error": "..."} is printed and the exit status is still 0, so the caller can assert on it.
"""
import json
import os
import sys
import time

os.environ["TZ"] = "UTC"
time.tzset()

import can  # noqa: E402


def convert(src: str, dest: str, limit: int) -> None:
    with can.Logger(dest) as writer:
        for i, msg in enumerate(can.LogReader(src)):
            if i >= limit:
                break
            writer.on_message_received(msg)


def main() -> None:
    if sys.argv[1] == "--convert":
        limit = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--limit" else 1 << 62
        convert(sys.argv[2], sys.argv[3], limit)
        return
    path = sys.argv[1]
    absolute = "--absolute" in sys.argv[2:]
    if path.endswith(".asc"):
        reader = can.ASCReader(path, relative_timestamp=not absolute)
    elif path.endswith(".asc.gz"):
        reader = can.LogReader(path, relative_timestamp=not absolute)
    elif path.endswith(".blf"):
        reader = can.BLFReader(path)
    elif path.endswith(".log"):
        reader = can.CanutilsLogReader(path)
    else:
        reader = can.LogReader(path)
    out = sys.stdout
    # Python-can's readers may stop at the first line they cannot parse; report it and exit 0.
    try:
        for msg in reader:
            out.write(
                json.dumps(
                    {
                        "timestamp": repr(msg.timestamp),
                        "arbitration_id": msg.arbitration_id,
                        "is_extended_id": msg.is_extended_id,
                        "is_remote_frame": msg.is_remote_frame,
                        "is_error_frame": msg.is_error_frame,
                        "is_fd": msg.is_fd,
                        "bitrate_switch": msg.bitrate_switch,
                        "error_state_indicator": msg.error_state_indicator,
                        "dlc": msg.dlc,
                        "data": bytes(msg.data).hex(),
                        "channel": msg.channel,
                        "is_rx": msg.is_rx,
                    }
                )
                + "\n"
            )
    except Exception as exc:  # noqa: BLE001 - the oracle reports, the test decides
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")


if __name__ == "__main__":
    main()
