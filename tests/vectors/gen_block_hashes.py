#!/usr/bin/python3
"""Generates tests/vectors/block_hashes.json, the golden vectors of Kvasir block hash v1.

An independent implementation of docs/engine-side.md "Block hashes" on plain hashlib and struct (it uses
neither the .NET code nor kvasir.kv), so the .NET and Python tests that check the committed JSON
cross-check all three. The committed block_hashes.json is the source of truth: tests read it, they
never regenerate it. Run from anywhere:  /usr/bin/python3 tests/vectors/gen_block_hashes.py
"""
import hashlib
import json
import os
import struct

MAGIC = b"KVASIR-BLOCK-V1\x00"
ZERO = bytes(32)


def one_block(parent: bytes, tokens, extra_keys) -> bytes:
    data = bytearray(MAGIC)
    data += parent
    data += struct.pack("<I", len(tokens))
    for t in tokens:
        data += struct.pack("<I", t)   # struct refuses t < 0 and t >= 2**32
    data += struct.pack("<I", len(extra_keys))
    for k in extra_keys:
        raw = k.encode("utf-8")
        data += struct.pack("<I", len(raw)) + raw
    return hashlib.sha256(bytes(data)).digest()


def chain(block_size, tokens, extra_keys, parent_hex=None):
    parent = bytes.fromhex(parent_hex) if parent_hex else ZERO
    out = []
    for i in range(len(tokens) // block_size):
        parent = one_block(parent, tokens[i * block_size:(i + 1) * block_size], extra_keys)
        out.append(parent.hex())
    return out


def case(name, block_size, tokens, extra_keys=(), parent=None):
    hashes = chain(block_size, list(tokens), list(extra_keys), parent)
    return {"name": name, "block_size": block_size, "tokens": list(tokens), "extra_keys": list(extra_keys),
            "parent": parent, "hashes": hashes, "keys": ["kvb1:" + h for h in hashes]}


def main():
    big = 2 ** 32 - 1
    given_parent = hashlib.sha256(b"a caller-given parent").hexdigest()
    cases = [
        case("empty token list", 16, []),
        case("fewer tokens than a block", 16, list(range(15))),
        case("exactly one block", 16, list(range(16))),
        case("three blocks and a partial tail", 16, list(range(1000, 1056))),
        case("block size 1", 1, [5, 6, 7]),
        case("block size 256, two blocks", 256, [(i * 7919) % 50000 for i in range(600)]),
        case("token 0 and 2**32-1", 4, [0, big, 0, big, big, 0, big, 0]),
        case("extra key model-a", 16, list(range(32)), ["model-a"]),
        case("extra keys model, lora, salt", 16, list(range(32)), ["model-a", "lora-7", "salt"]),
        case("non-ASCII extra key", 16, list(range(32)), ["modèle-ü-模型"]),
        case("empty-string extra key differs from none", 16, list(range(16)), [""]),
        case("caller-given parent", 16, list(range(48)), [], given_parent),
        case("caller-given parent and extra keys", 8, list(range(20)), ["model-a"], given_parent),
    ]
    invalid = [
        {"name": "negative token", "block_size": 4, "tokens": [1, 2, -1, 3]},
        {"name": "token 2**32", "block_size": 4, "tokens": [1, 2, 2 ** 32, 3]},
        {"name": "block size 0", "block_size": 0, "tokens": [1, 2, 3, 4]},
        {"name": "block size -1", "block_size": -1, "tokens": [1, 2, 3, 4]},
    ]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "block_hashes.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\"version\": 1,\n \"cases\": [\n  " + ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in cases)
                + "],\n \"invalid\": [\n  " + ",\n  ".join(json.dumps(c) for c in invalid) + "]}")
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases, {len(invalid)} invalid")


if __name__ == "__main__":
    main()
