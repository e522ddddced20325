"""Breached passwords, checked offline: a filter of Have I Been Pwned's SHA-1 list, memory-mapped.

The only module that imports pyfusefilter. `build` turns the downloaded list (`HASH:COUNT` lines)
into a filter file; `BreachFilter` opens that file and answers whether a password is in it.

The filter is a binary fuse filter with 16-bit fingerprints (pyfusefilter's Fuse16, from the
FastFilter C library): about 18 bits per entry and a false-positive rate of 2**-16 (0.0015 %), no
false negatives. Fuse8 would halve the file, but would refuse 1 in 256 unbreached passwords.

Two quirks of pyfusefilter 1.3.0 decide how it is used here:

- Its Python classes hash every key as `xxhash.xxh64_intdigest(str(key))`, which xxhash 4 refuses
  ("Strings must be encoded before hashing"). A SHA-1 is already uniform, so its first 8 bytes are
  the 64-bit key, given straight to the library's C functions (`lib`, through its cffi module);
- its `deserialize` copies a filter into memory of its own, so N workers would hold N copies. Here
  the file is memory-mapped and the library's lookup reads the fingerprints in place: every process
  shares the page cache, and only the pages that lookups touch become resident.

The file holds 256 partitions (by the first byte of the SHA-1), so that a build holds one partition
at a time, never the whole list. Layout, all integers little-endian:

    header     magic b"PWDRSTBF", version u16, fingerprint bits u16, partitions u32,
               entries u64, min-count u64                                        (32 bytes)
    table      per partition: offset u64, length u64, entries u64                (256 x 24 bytes)
    partitions the library's serialization of each filter (binary_fuse16_serialize: a 28-byte
               header, then the fingerprints), each starting at a multiple of 8
"""

import array
import binascii
import hashlib
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyfusefilter._xorfilter import ffi, lib

MAGIC = b"PWDRSTBF"
VERSION = 1
FINGERPRINT_BITS = 16
PARTITIONS = 256
FALSE_POSITIVE_RATE = 2.0**-FINGERPRINT_BITS

HEADER = struct.Struct("<8sHHIQQ")
TABLE_ENTRY = struct.Struct("<QQQ")
# binary_fuse16_serialize writes Seed u64, Size, SegmentLength, SegmentCount, SegmentCountLength,
# ArrayLength (u32 each), then ArrayLength fingerprints.
FUSE_HEADER = struct.Struct("<QIIIII")

# Keys a partition gathers in memory before they go to its spill file while reading the list.
SPILL_BATCH = 8192
# Bytes read from the list at a time (and between two progress updates).
READ_CHUNK = 4 << 20


class FilterFileError(ValueError):
    """A breach filter file is missing, unreadable or not in this format; the message says which."""


def password_digest(password: str) -> bytes:
    """Return the SHA-1 of a password as Have I Been Pwned computes it (of its UTF-8 bytes)."""
    # Not a protection: the list is keyed by SHA-1, so the lookup must be too.
    return hashlib.sha1(password.encode("utf-8", "surrogatepass"), usedforsecurity=False).digest()


def _key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class FilterInfo:
    """What a filter file's header says, once checked."""

    path: str
    size: int
    entries: int
    min_count: int
    table: tuple = ()

    @property
    def bits_per_entry(self) -> float:
        return self.size * 8 / self.entries if self.entries else 0.0

    def describe(self) -> str:
        """Return one line for an administrator."""
        return (
            f"{self.path}: {self.entries:,} entries (count >= {self.min_count}), {self.size:,} bytes, "
            f"{self.bits_per_entry:.2f} bits per entry, false-positive rate {FALSE_POSITIVE_RATE:.4%}"
        )


def inspect(path: str) -> FilterInfo:
    """Check a filter file (readable, format, version, size, entry counts) and return its header."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(HEADER.size + PARTITIONS * TABLE_ENTRY.size)
            return _check(path, size, head, fh)
    except OSError as exc:
        raise FilterFileError(f"{path} cannot be read: {exc.strerror}") from None


def _check(path: str, size: int, head: bytes, fh) -> FilterInfo:
    if len(head) < HEADER.size or not head.startswith(MAGIC):
        raise FilterFileError(f"{path} is not a pwdrst breach filter (build one with build-breach-filter)")
    magic, version, bits, partitions, entries, min_count = HEADER.unpack_from(head)
    if version != VERSION or bits != FINGERPRINT_BITS or partitions != PARTITIONS:
        raise FilterFileError(
            f"{path} is a breach filter of version {version} ({bits}-bit, {partitions} partitions); "
            f"this pwdrst reads version {VERSION}: build it again"
        )
    if len(head) < HEADER.size + PARTITIONS * TABLE_ENTRY.size:
        raise FilterFileError(f"{path} is truncated ({size} bytes)")
    table = tuple(TABLE_ENTRY.iter_unpack(head[HEADER.size :]))
    end = HEADER.size + PARTITIONS * TABLE_ENTRY.size
    for number, (offset, length, count) in enumerate(table):
        if offset < end or offset + length > size or length < FUSE_HEADER.size:
            raise FilterFileError(f"{path} is truncated or damaged (partition {number} lies outside the file)")
        fh.seek(offset)
        fuse = FUSE_HEADER.unpack(fh.read(FUSE_HEADER.size))
        if fuse[1] != count or FUSE_HEADER.size + 2 * fuse[5] > length:
            raise FilterFileError(f"{path} is damaged (partition {number} does not match its table entry)")
        end = offset + length
    if end != size:
        raise FilterFileError(f"{path} is {size:,} bytes, its table says {end:,}: truncated or damaged")
    if sum(count for _, _, count in table) != entries:
        raise FilterFileError(f"{path} is damaged (its partitions do not add up to {entries:,} entries)")
    return FilterInfo(path, size, entries, min_count, table)


class BreachFilter:
    """A filter file, memory-mapped read-only: `password in filter` asks it."""

    def __init__(self, path: str):
        self.info = inspect(path)
        with open(path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        # Lookups touch three scattered fingerprints: reading ahead would only fill memory.
        self._map.madvise(mmap.MADV_RANDOM)
        self._base = ffi.cast("char *", ffi.from_buffer(self._map))
        self._filters = [self._partition(offset) for offset, _, _ in self.info.table]

    def _partition(self, offset: int):
        seed, size, segment_length, segment_count, segment_count_length, array_length = FUSE_HEADER.unpack_from(
            self._map, offset
        )
        fuse = ffi.new("binary_fuse16_t *")
        fuse.Seed = seed
        fuse.Size = size
        fuse.SegmentLength = segment_length
        fuse.SegmentLengthMask = segment_length - 1
        fuse.SegmentCount = segment_count
        fuse.SegmentCountLength = segment_count_length
        fuse.ArrayLength = array_length
        # Never freed by the library: the fingerprints belong to the mapping.
        fuse.Fingerprints = ffi.cast("uint16_t *", self._base + offset + FUSE_HEADER.size)
        return fuse

    def __contains__(self, password: str) -> bool:
        return self.contains_digest(password_digest(password))

    def contains_digest(self, digest: bytes) -> bool:
        """Return whether a SHA-1 digest is (probably) in the filter."""
        return bool(lib.binary_fuse16_contain(_key(digest), self._filters[digest[0]]))


@dataclass
class BuildReport:
    """What a build read, kept and wrote."""

    lines: int = 0
    entries: int = 0
    lowercase: int = 0
    malformed: int = 0
    below_min_count: int = 0
    malformed_lines: list = field(default_factory=list)
    size: int = 0
    seconds: float = 0.0
    largest_partition: int = 0

    @property
    def bits_per_entry(self) -> float:
        return self.size * 8 / self.entries if self.entries else 0.0

    def summary(self) -> str:
        """Return the final line: entries, bytes, bits per entry, false-positive rate, time."""
        return (
            f"{self.entries:,} entries, {self.size:,} bytes, {self.bits_per_entry:.2f} bits per entry, "
            f"false-positive rate {FALSE_POSITIVE_RATE:.4%} (1 in {round(1 / FALSE_POSITIVE_RATE):,}), "
            f"{self.seconds:.1f} s"
        )


def build(
    stream,
    out: str,
    min_count: int = 1,
    on_read: Callable[[int], None] | None = None,
    on_partition: Callable[[int], None] | None = None,
) -> BuildReport:
    """Build a filter file at out from a binary stream of `HASH:COUNT` lines.

    Reads the list once, sending each kept hash's 8-byte key to its partition's spill file (beside
    out), then builds the partitions one at a time: memory holds one partition's keys (8 bytes
    each) and the library's work space for it, whatever the list's length. out is replaced at the
    end in one step, so workers never see half a file. on_read gets the bytes read, on_partition
    the number of each partition built.
    """
    started = time.monotonic()
    report = BuildReport()
    directory = os.path.dirname(os.path.abspath(out))
    with tempfile.TemporaryDirectory(prefix=".breach-build-", dir=directory) as spill_dir:
        counts = _spill(stream, spill_dir, min_count, report, on_read)
        partial = os.path.join(spill_dir, "filter")
        with open(partial, "w+b") as fh:
            _write(fh, spill_dir, counts, min_count, report, on_partition)
            report.size = fh.tell()
        os.replace(partial, out)
    report.seconds = time.monotonic() - started
    return report


def _spill(stream, spill_dir: str, min_count: int, report: BuildReport, on_read) -> list[int]:
    files = [open(os.path.join(spill_dir, f"{p:02x}.keys"), "wb") for p in range(PARTITIONS)]  # noqa: SIM115
    batches = [array.array("Q") for _ in range(PARTITIONS)]
    counts = [0] * PARTITIONS
    unhexlify, upper = binascii.unhexlify, bytes.upper
    number = 0
    try:
        while True:
            lines = stream.readlines(READ_CHUNK)
            if not lines:
                break
            for line in lines:
                number += 1
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                hexdigits, colon, count = line[:40], line[40:41], line[41:]
                try:
                    if len(hexdigits) != 40 or (colon and (colon != b":" or not count.isdigit())):
                        raise ValueError
                    digest = unhexlify(hexdigits)
                except (ValueError, binascii.Error):
                    report.malformed += 1
                    if len(report.malformed_lines) < 5:
                        report.malformed_lines.append(number)
                    continue
                if upper(hexdigits) != hexdigits:
                    report.lowercase += 1
                if colon and int(count) < min_count:
                    report.below_min_count += 1
                    continue
                partition = digest[0]
                batch = batches[partition]
                batch.append(int.from_bytes(digest[:8], "big"))
                if len(batch) >= SPILL_BATCH:
                    batch.tofile(files[partition])
                    counts[partition] += len(batch)
                    batches[partition] = array.array("Q")
            if on_read:
                on_read(sum(map(len, lines)))
        for partition, batch in enumerate(batches):
            batch.tofile(files[partition])
            counts[partition] += len(batch)
    finally:
        for fh in files:
            fh.close()
    report.lines = number
    report.entries = sum(counts)
    report.largest_partition = max(counts)
    return counts


def _write(fh, spill_dir: str, counts: list[int], min_count: int, report: BuildReport, on_partition) -> None:
    table = []
    offset = HEADER.size + PARTITIONS * TABLE_ENTRY.size
    fh.write(b"\0" * offset)
    for partition in range(PARTITIONS):
        keys = array.array("Q")
        with open(os.path.join(spill_dir, f"{partition:02x}.keys"), "rb") as spill:
            keys.fromfile(spill, counts[partition])
        blob = _serialized_filter(keys)
        del keys
        padding = -len(blob) % 8
        fh.write(blob + b"\0" * padding)
        table.append(TABLE_ENTRY.pack(offset, len(blob), counts[partition]))
        offset += len(blob) + padding
        os.unlink(spill.name)
        if on_partition:
            on_partition(partition)
    end = fh.tell()
    fh.seek(0)
    fh.write(HEADER.pack(MAGIC, VERSION, FINGERPRINT_BITS, PARTITIONS, report.entries, min_count))
    fh.write(b"".join(table))
    fh.seek(end)


def _serialized_filter(keys: array.array) -> bytes:
    """Build one partition's filter with the library and return its serialization."""
    fuse = ffi.new("binary_fuse16_t *")
    if not lib.binary_fuse16_allocate(len(keys), fuse):
        raise MemoryError("the filter library could not allocate a partition")
    try:
        # The library removes duplicate keys itself (a hash listed twice, or two sharing 8 bytes).
        if len(keys) and not lib.binary_fuse16_populate(ffi.from_buffer("uint64_t[]", keys), len(keys), fuse):
            raise RuntimeError("the filter library could not build a partition")
        buffer = ffi.new("char[]", lib.binary_fuse16_serialization_bytes(fuse))
        lib.binary_fuse16_serialize(fuse, buffer)
        return ffi.buffer(buffer)[:]
    finally:
        lib.binary_fuse16_free(fuse)
