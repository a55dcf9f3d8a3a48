#!/usr/bin/env python3
"""What a hostile operator holding a log's key can forge, for docs/auditor-guide.md.

It uses nothing of govern: Python's hashlib for the RFC 9162 tree, and the openssl command for
Ed25519, over the formats docs/formats.md describes (C2SP tlog-tiles, signed notes).

  forge.py checkpoint KEYFILE SIZE ROOT_HEX
      print a checkpoint of SIZE naming the tree root ROOT_HEX, signed with KEYFILE (a log's
      `log.key`): another view of the log, as a split view shows it to someone else.
  forge.py reappend EXPORT INDEX KEYFILE
      append entry INDEX of the export EXPORT again as its last entry, in place: the entry
      bundle and every hash tile recomputed, a checkpoint of the new size signed with KEYFILE
      (`checkpoint`, `checkpoints/<size>`), the size in `v1/log`. Every hash and signature of
      the result is valid.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

WIDTH = 256
# PKCS#8 for an Ed25519 private key, before its 32-byte seed (RFC 8410).
PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")


def die(message):
    sys.stderr.write(f"error: {message}\n")
    sys.exit(1)


def read_key(path):
    """(name, key ID, seed) of a signer key `PRIVATE+KEY+name+<hex ID>+base64(0x01 || seed)`."""
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    parts = text.split("+", 4)  # the base64 key may hold "+" too
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        die(f"{path}: not a signer key (PRIVATE+KEY+name+id+key)")
    material = base64.b64decode(parts[4])
    if len(material) != 33 or material[0] != 1:
        die(f"{path}: not an Ed25519 key")
    return parts[2], bytes.fromhex(parts[3]), material[1:]


def sign_note(key_path, text):
    """The signed note of `text`: the text, a blank line, and the key's signature line."""
    name, key_id, seed = read_key(key_path)
    with tempfile.TemporaryDirectory() as tmp:
        der = os.path.join(tmp, "key.der")
        msg = os.path.join(tmp, "text")
        with open(der, "wb") as f:
            f.write(PKCS8_ED25519 + seed)
        with open(msg, "wb") as f:
            f.write(text.encode())
        signature = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-rawin", "-keyform", "DER", "-inkey", der, "-in", msg],
            check=True,
            capture_output=True,
        ).stdout
    line = base64.b64encode(key_id + signature).decode()
    return f"{text}\n\u2014 {name} {line}\n"


def checkpoint_text(origin, size, root):
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(hashes):
    """RFC 9162 MTH over leaf hashes."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(root_of(hashes[:k]), root_of(hashes[k:]))


def tile_path(level, index, width):
    """C2SP tlog-tiles path of a tile: `tile/<L>/<N>[.p/<W>]`, N in 3-digit groups."""
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    n = "/".join("x" + g for g in reversed(groups[1:])) + ("/" if len(groups) > 1 else "") + groups[0]
    partial = f".p/{width}" if width < WIDTH else ""
    return f"tile/{level}/{n}{partial}"


def read_entries(export, size):
    entries = []
    for k in range((size + WIDTH - 1) // WIDTH):
        width = min(WIDTH, size - k * WIDTH)
        path = os.path.join(export, tile_path("entries", k, width))
        with open(path, "rb") as f:
            data = f.read()
        at = 0
        while at < len(data):
            n = int.from_bytes(data[at : at + 2], "big")
            entries.append(data[at + 2 : at + 2 + n])
            at += 2 + n
    if len(entries) != size:
        die(f"{export}: {len(entries)} entries in the bundles, not {size}")
    return entries


def write(export, rel, data):
    path = os.path.join(export, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_tiles(export, entries):
    """Every entry bundle and hash tile of the tree of `entries`."""
    size = len(entries)
    for k in range((size + WIDTH - 1) // WIDTH):
        chunk = entries[k * WIDTH : (k + 1) * WIDTH]
        bundle = b"".join(len(e).to_bytes(2, "big") + e for e in chunk)
        write(export, tile_path("entries", k, len(chunk)), bundle)
    level, hashes = 0, [leaf_hash(e) for e in entries]
    while hashes:
        for k in range((len(hashes) + WIDTH - 1) // WIDTH):
            chunk = hashes[k * WIDTH : (k + 1) * WIDTH]
            write(export, tile_path(level, k, len(chunk)), b"".join(chunk))
        # The next level holds the roots of the complete 256-wide subtrees of this one.
        hashes = [root_of(hashes[i : i + WIDTH]) for i in range(0, len(hashes) - WIDTH + 1, WIDTH)]
        level += 1


def reappend(export, index, key_path):
    with open(os.path.join(export, "checkpoint"), encoding="utf-8") as f:
        origin, size = f.read().split("\n")[:2]
    size = int(size)
    entries = read_entries(export, size)
    if not 0 <= index < size:
        die(f"{export} has no entry {index} (size {size})")
    entries.append(entries[index])
    write_tiles(export, entries)
    root = root_of([leaf_hash(e) for e in entries])
    note = sign_note(key_path, checkpoint_text(origin, len(entries), root)).encode()
    write(export, "checkpoint", note)
    write(export, f"checkpoints/{len(entries)}", note)
    with open(os.path.join(export, "v1/log"), encoding="utf-8") as f:
        info = json.load(f)
    info["size"] = len(entries)
    write(export, "v1/log", json.dumps(info, separators=(",", ":")).encode())
    print(f"entry {index} appended again as entry {size}; checkpoint of size {len(entries)} signed with {key_path}")


def main(argv):
    if len(argv) == 5 and argv[1] == "checkpoint":
        _, _, key_path, size, root = argv
        name = read_key(key_path)[0]
        sys.stdout.write(sign_note(key_path, checkpoint_text(name, int(size), bytes.fromhex(root))))
    elif len(argv) == 5 and argv[1] == "reappend":
        _, _, export, index, key_path = argv
        reappend(export, int(index), key_path)
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
