#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/ (a few dozen tiny files).

Each seed follows the input layout its body documents in fuzz/bodies/*.rs; rerun after
changing a layout: python3 fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
BASE = 0x8000_0000


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def desc(addr, length, flags, nxt):
    return struct.pack("<QIHH", addr, length, flags, nxt)


NEXT, WRITE, INDIRECT = 1, 2, 4

# --- virtio_chain: [ram_mode, table_mode, desc_mode, size:2, head:2, table_off:4,
#                    ram_len:2, extra:8] then RAM bytes.


def chain(name, descs, ram_mode=1, table_mode=0, desc_mode=0, size=8, head=0,
          table_off=0, ram_len=0x400, extra=0, base=BASE):
    ram = b"".join(desc(*d) for d in descs)
    hdr = struct.pack("<BBBHHIHQ", ram_mode, table_mode, desc_mode, size, head,
                      table_off, ram_len, extra)
    write("virtio_chain", name, hdr + ram)


chain("valid-3", [(BASE + 0x200, 16, NEXT, 1), (BASE + 0x300, 0x100, NEXT | WRITE, 2),
                  (BASE + 0x3ff, 1, WRITE, 0)])
chain("loop", [(BASE + 0x200, 16, NEXT, 1), (BASE + 0x210, 16, NEXT, 0)], size=2)
chain("readable-after-writable", [(BASE + 0x200, 16, WRITE | NEXT, 1),
                                  (BASE + 0x210, 16, 0, 0)])
chain("indirect", [(BASE + 0x200, 32, INDIRECT, 0)])
chain("straddles-end", [(BASE + 0x3f0, 0x20, 0, 0)])
chain("next-out-of-range", [(BASE + 0x200, 1, NEXT, 9)])
chain("head-out-of-range", [(BASE + 0x200, 1, 0, 0)], head=8)
chain("empty-buffers-anywhere", [(0xffff_ffff_ffff_fff0, 0, NEXT, 1), (0, 0, 0, 0)])
top = (1 << 64) - 0x400
chain("top-of-address-space", [(top + 0x3ff, 1, NEXT, 1), ((1 << 64) - 1, 2, 0, 0)],
      ram_mode=2)
chain("table-straddles-start", [(BASE, 1, 0, 0)] * 4, table_mode=2, table_off=8)
chain("driver-like", [(i * 0x1234567, i * 77, i, i * 3) for i in range(16)],
      desc_mode=3, size=16, head=5)

# --- virtio_mmio: [device, extra] then operations (see mmio_transport).
Q0, Q1 = 0x0000, 0x2000  # queue regions (offsets): desc +0, avail +0x1000, used +0x1400
DATA = 0x6000


def init(*qsizes_log2):
    return bytes([6, 0, *qsizes_log2])


def poke(at, data):
    out = b""
    for i in range(0, len(data), 63):
        part = data[i:i + 63]
        out += bytes([3]) + struct.pack("<H", at + i) + bytes([len(part)]) + part
    return out


def d(table, index, addr_off, length, flags, nxt):
    """op 4; length as mode 3 (u16)."""
    return (bytes([4]) + struct.pack("<HBH", table, index, addr_off) + bytes([3])
            + struct.pack("<H", length) + bytes([flags, nxt]))


def publish(region, idx, head, qsize_log2, q):
    return bytes([5]) + struct.pack("<HHH", region + 0x1000, idx, head) + bytes([qsize_log2, q])


PROCESS = bytes([7])


def complete(pick=0, how=0, fill=0xab, extra=b""):
    return bytes([8, pick, how, fill]) + extra


def blk_header(kind, sector):
    return struct.pack("<IIQ", kind, 0, sector)


REG = {0x014: 5, 0x020: 6, 0x024: 7, 0x030: 8, 0x038: 10, 0x044: 11, 0x050: 12, 0x070: 15,
       0x080: 16, 0x084: 17, 0x090: 18, 0x094: 19, 0x0a0: 20, 0x0a4: 21}


def reg(offset, value):
    """op 0: a 4-byte write of a raw u32 to a known register."""
    return bytes([0, REG[offset], 0, 0]) + struct.pack("<I", value)


def mmio(name, selector, extra, ops):
    write("virtio_mmio", name, bytes([selector, extra]) + ops)


# Block, 2041 sectors: a read of 2 sectors, a write, a flush, GET_ID, a discard.
blk = init(3)
blk += poke(DATA, blk_header(0, 1)) + d(Q0, 0, DATA, 16, NEXT, 1)
blk += d(Q0, 1, DATA + 0x100, 1024, NEXT | WRITE, 2) + d(Q0, 2, DATA + 0x600, 1, WRITE, 0)
blk += publish(Q0, 1, 0, 3, 0) + PROCESS + complete()
mmio("block-read", 0x10, 255, blk)
blk = init(3)
blk += poke(DATA, blk_header(1, 7)) + d(Q0, 0, DATA, 16, NEXT, 1)
blk += d(Q0, 1, DATA + 0x100, 512, NEXT, 2) + d(Q0, 2, DATA + 0x600, 1, WRITE, 0)
blk += publish(Q0, 1, 0, 3, 0) + PROCESS + complete()
mmio("block-write", 0x10, 255, blk)
blk = init(2)
blk += poke(DATA, blk_header(4, 0) + blk_header(8, 0))
blk += d(Q0, 0, DATA, 16, NEXT, 1) + d(Q0, 1, DATA + 0x600, 1, WRITE, 0)
blk += d(Q0, 2, DATA + 16, 16, NEXT, 3) + d(Q0, 3, DATA + 0x700, 21, WRITE, 0)
blk += publish(Q0, 1, 0, 2, 0) + publish(Q0, 2, 2, 2, 0) + PROCESS + complete()
mmio("block-flush-getid", 0x10, 255, blk)
blk = init(3)
blk += poke(DATA, blk_header(11, 0) + struct.pack("<QII", 4, 8, 0))
blk += d(Q0, 0, DATA, 32, NEXT, 1) + d(Q0, 1, DATA + 0x600, 1, WRITE, 0)
blk += publish(Q0, 1, 0, 3, 0) + PROCESS + complete()
mmio("block-discard", 0x10, 255, blk)
# Overlapping writes (the second waits), then a reset before the completion.
blk = init(3)
blk += poke(DATA, blk_header(1, 0) + blk_header(1, 0))
blk += d(Q0, 0, DATA, 16, NEXT, 1) + d(Q0, 1, DATA + 0x100, 512, NEXT, 2)
blk += d(Q0, 2, DATA + 0x600, 1, WRITE, 0)
blk += d(Q0, 3, DATA + 16, 16, NEXT, 4) + d(Q0, 4, DATA + 0x100, 512, NEXT, 5)
blk += d(Q0, 5, DATA + 0x601, 1, WRITE, 0)
blk += publish(Q0, 1, 0, 3, 0) + publish(Q0, 2, 3, 3, 0) + PROCESS + complete()
blk += PROCESS + bytes([11]) + reg(0x070, 0) + complete() + PROCESS
mmio("block-overlap-reset", 0x10, 255, blk)
mmio("block-readonly", 0x18, 4, init(0) + poke(DATA, blk_header(1, 0))
     + d(Q0, 0, DATA, 16, NEXT, 1) + d(Q0, 1, DATA + 0x100, 512, NEXT, 2)
     + d(Q0, 2, DATA + 0x600, 1, WRITE, 0) + publish(Q0, 1, 0, 0, 0) + PROCESS)
# Used ring outside RAM: the driver programs queue 0 by hand.
hand = reg(0x070, 0) + reg(0x070, 1) + reg(0x070, 3) + reg(0x024, 1) + reg(0x020, 1)
hand += reg(0x070, 0xb) + reg(0x030, 0) + reg(0x038, 8) + reg(0x080, BASE)
hand += reg(0x090, BASE + 0x1000) + reg(0x0a0, 0x1000) + reg(0x044, 1) + reg(0x070, 0xf)
hand += d(Q0, 0, DATA, 16, NEXT, 1) + d(Q0, 1, DATA + 0x600, 1, WRITE, 0)
hand += publish(Q0, 1, 0, 3, 0) + PROCESS + complete()
mmio("block-used-ring-outside", 0x10, 255, hand)
# Net: a frame received into a posted buffer, a frame transmitted, one too large.
net = init(3, 3)
net += d(Q0, 0, DATA, 2048, WRITE, 0) + publish(Q0, 1, 0, 3, 0) + PROCESS
net += complete(0, 1, 0x5a, struct.pack("<H", 60))
net += d(Q1, 0, DATA + 0x1000, 12 + 60, 0, 0) + publish(Q1, 1, 0, 3, 1) + PROCESS
net += complete(0, 0, 0)
mmio("net-rx-tx", 0x02, 0x10, net)
# Rng: 64 bytes asked, answered short then a stray completion.
rng = init(3) + d(Q0, 0, DATA, 64, WRITE, 0) + d(Q0, 1, DATA + 64, 64, WRITE, 0)
rng += publish(Q0, 1, 0, 3, 0) + publish(Q0, 2, 1, 3, 0) + PROCESS
rng += complete(0, 0, 0x77, struct.pack("<H", 31)) + complete(0, 0, 0x66, struct.pack("<H", 100))
rng += bytes([10, 1, 5, 9])
mmio("rng", 0x03, 0, rng)
mmio("registers-only", 0x00, 1, bytes([2, 0, 0, 2]) + bytes([0, 15, 0, 3, 0xff]) + bytes([2, 0x70, 0, 2]))

# --- nbd_wire: raw bytes for every parser.
SIMPLE = 0x67446698
write("nbd_wire", "simple-reply-ok", struct.pack(">IIQ", SIMPLE, 0, 0x0102030405060708))
write("nbd_wire", "simple-reply-eio-data", struct.pack(">IIQ", SIMPLE, 5, 7) + b"\0" * 8)
write("nbd_wire", "structured-reply", struct.pack(">IHHQI", 0x668E33EF, 1, 1, 9, 0))
write("nbd_wire", "simple-reply-truncated", struct.pack(">II", SIMPLE, 0))
write("nbd_wire", "greeting", struct.pack(">QQH", 0x4E42444D41474943, 0x49484156454F5054, 3))
write("nbd_wire", "greeting-oldstyle", struct.pack(">QQ", 0x4E42444D41474943, 0x00420281861253))
write("nbd_wire", "option-reply", struct.pack(">QIII", 0x0003E889045565A9, 7, 3, 12))
write("nbd_wire", "info-export", struct.pack(">HQH", 0, 1 << 30, 0x2d))
write("nbd_wire", "info-other", struct.pack(">HI", 3, 512))
write("nbd_wire", "empty", b"")

# --- nbd_handshake: [mode, name_len], name, server bytes (mode bit 0: a greeting first).
OPT = 0x0003E889045565A9


def rep(rtype, data, option=7):
    return struct.pack(">QIII", OPT, option, rtype, len(data)) + data


info = struct.pack(">HQH", 0, 256 << 20, 0x2d)
write("nbd_handshake", "go-ok", bytes([1, 4]) + b"disk" + rep(3, info) + rep(1, b""))
write("nbd_handshake", "go-ok-no-zeroes", bytes([0x81, 0]) + rep(3, struct.pack(">HI", 3, 1))
      + rep(3, info) + rep(1, b""))
write("nbd_handshake", "go-ack-without-info", bytes([1, 1]) + b"x" + rep(1, b""))
write("nbd_handshake", "go-unsupported", bytes([1, 1]) + b"x" + rep(0x80000001, b"")
      + struct.pack(">QH", 1 << 20, 1) + b"\0" * 124)
write("nbd_handshake", "go-refused", bytes([1, 0]) + rep(0x80000006, b"no such export"))
write("nbd_handshake", "reply-too-long", bytes([1, 0]) + struct.pack(">QIII", OPT, 7, 3, 1 << 20))
write("nbd_handshake", "write-fails", bytes([1 | 2 | (8 << 2), 0]) + rep(3, info) + rep(1, b""))
write("nbd_handshake", "raw-greeting", bytes([0, 0]) + struct.pack(">QQH", 0x4E42444D41474943,
                                                                  0x49484156454F5054, 1))


# --- protocol_message: one 64-byte FT protocol message (crates/protocol/src/wire.rs).
def fnv1a(b):
    h = 0x811C9DC5
    for x in b:
        h = ((h ^ x) * 0x01000193) & 0xFFFFFFFF
    return h


def msg(kind, session, fields):
    b = b"FTVP" + bytes([2, kind, 0, 0]) + struct.pack("<Q", session)
    b += b"".join(struct.pack("<Q", f) for f in fields)
    return b + struct.pack("<I", fnv1a(b)) + b"\0" * 4


S = 0x0102030405060708
write("protocol_message", "heartbeat-primary", msg(1, S, [0, 0, 5, 0, 1000]))
write("protocol_message", "heartbeat-backup", msg(1, S, [1, 0, 0, 7, 900]))
write("protocol_message", "ack", msg(2, S, [9, 12345, 678, 0, 0]))
write("protocol_message", "ack-beyond", msg(2, S, [2**64 - 1] * 3 + [0, 0]))
write("protocol_message", "hello", msg(3, 0, [40000, 0, 0, 0, 0]))
write("protocol_message", "welcome", msg(4, S, [7000, 0, 0, 0, 0]))
write("protocol_message", "welcome-disks", msg(4, S, [7000, 1 << 26, 3, 1, 0]))
write("protocol_message", "disk-image", msg(5, 0, [0, 64 << 20, 0, 0, 0]))
write("protocol_message", "disk-data", msg(6, 0, [0, 4096, 1 << 20, 0x0123456789ABCDEF, 0]))
write("protocol_message", "disk-zero", msg(7, 0, [1, 0, 2**64 - 1, 0, 0]))
write("protocol_message", "disk-end", msg(8, 0, [1, 12345, 0, 0, 0]))
write("protocol_message", "welcome-ram-apart", msg(4, S, [7000, 1 << 20, 2, 0, 1]))
write("protocol_message", "ram-run", msg(9, 0, [3, 256, 0xFEDCBA9876543210, 0, 0]))
write("protocol_message", "ram-end", msg(10, 0, [131072, 0, 0, 0, 0]))
write("protocol_message", "config", msg(11, 0, [512, 0, 0, 0, 0]))
write("protocol_message", "short", msg(2, 1, [1, 2, 3, 0, 0])[:40])
