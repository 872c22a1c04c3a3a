#!/usr/bin/env python3
"""Oracle for can-decoders' differential decode test.

Usage: cantools_decode.py DBC_FILE < payloads

Each stdin line is "<message name> <hex payload>" (the payload may be shorter than the message:
it is decoded like cantools' ``decode(allow_truncated=True)``). Each output line is one JSON object:
``{"values": {signal: ["i", "<python int>"] | ["f", "<float.hex()>"]}, "mux_unknown": bool}``.

A line "!encode <message name> <JSON object of physical values>" is encoded with
``Message.encode(values, strict=True)`` instead; the output is ``{"hex": "<payload>"}`` or
``{"error": "<message>"}``.

Where cantools' ``Message.decode`` raises on a multiplexer value that selects nothing, this walks
the same codec tree, skips that branch, keeps everything else and reports ``mux_unknown``, which
is what the Rust decoder does. Values are decoded with ``decode_choices=False``; multiplexer
numbers are resolved from the ``decode_choices=True`` result, as ``Message.decode`` does.
"""
import json
import sys

import cantools
from cantools.database.utils import decode_data


def walk(msg, node, data, out, flags):
    values = decode_data(data, msg.length, node['signals'], node['formats'],
                         False, True, True, True)
    choices = decode_data(data, msg.length, node['signals'], node['formats'],
                          True, True, True, True)
    out.update(values)
    for switch, children in node['multiplexers'].items():
        if switch not in choices:
            continue
        child = children.get(msg._get_mux_number(choices, switch))
        if child is None:
            flags['mux_unknown'] = True
            continue
        walk(msg, child, data, out, flags)


def encode_value(v):
    if isinstance(v, bool) or isinstance(v, int):
        return ['i', str(int(v))]
    return ['f', float(v).hex()]


def main():
    with open(sys.argv[1]) as f:
        db = cantools.database.load_string(f.read(), 'dbc')
    by_name = {m.name: m for m in db.messages}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line.startswith('!encode '):
            name, _, values = line[len('!encode '):].partition(' ')
            try:
                data = by_name[name].encode(json.loads(values), strict=True)
                print(json.dumps({'hex': data.hex()}))
            except Exception as e:  # noqa: BLE001 - any refusal is an outcome to compare
                print(json.dumps({'error': f'{type(e).__name__}: {e}'}))
            continue
        name, _, payload = line.partition(' ')
        msg = by_name[name]
        out, flags = {}, {'mux_unknown': False}
        walk(msg, msg._codecs, bytes.fromhex(payload), out, flags)
        print(json.dumps({'values': {k: encode_value(v) for k, v in out.items()},
                          'mux_unknown': flags['mux_unknown']}))


if __name__ == '__main__':
    main()
