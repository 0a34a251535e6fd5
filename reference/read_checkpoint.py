#!/usr/bin/env python3
"""Open a dlf checkpoint (safetensors format) with PyTorch and list its tensors.

Usage: read_checkpoint.py CHECKPOINT [--values N] [--meta]

Prints one line per tensor, tab-separated: name, safetensors dtype, torch dtype, shape. With
--values N, a second line "  values:" follows with the first N elements (repr of the float64 value,
which is exact for float32 data). With --meta, the __metadata__ map is printed first as "meta:" lines.

The file is parsed by hand (8-byte little-endian header length, JSON header, data buffer; the format
described in the huggingface/safetensors README) so that the script needs only torch, not the
safetensors package; the tensors it builds are the ones torch's own loader would give.
"""

import argparse
import json
import struct
import sys

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

MAX_HEADER = 100 << 20  # the same limit as dlf's Go reader


def load(path):
    """Returns (metadata dict, list of (name, dtype code, tensor)) in file order."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for the header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} does not fit the {len(raw)}-byte file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {}) or {}
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    out = []
    for name, info in entries:
        code = info["dtype"]
        if code not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r}: dtype {code} not supported here")
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: tensor {name!r}: offsets [{begin}, {end}) outside the data")
        dt = DTYPES[code]
        shape = list(info["shape"])
        buf = bytearray(data[begin:end])
        if len(buf) == 0:
            t = torch.empty(shape, dtype=dt)
        else:
            t = torch.frombuffer(buf, dtype=dt)
            if sys.byteorder == "big":
                t = t.byteswap()  # the format is little-endian
            t = t.reshape(shape)
        out.append((name, code, t))
    return meta, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--values", type=int, default=0, metavar="N", help="print the first N values of each tensor")
    ap.add_argument("--meta", action="store_true", help="print the metadata map")
    args = ap.parse_args()
    try:
        meta, tensors = load(args.checkpoint)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"read_checkpoint: {e}", file=sys.stderr)
        return 1
    if args.meta:
        for k in sorted(meta):
            print(f"meta:\t{k}\t{meta[k]}")
    for name, code, t in tensors:
        print(f"{name}\t{code}\t{t.dtype}\t{list(t.shape)}")
        if args.values > 0:
            vals = t.reshape(-1)[: args.values].tolist()
            print("  values:\t" + "\t".join(repr(float(v)) for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
