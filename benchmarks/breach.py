"""Benchmark the breach filter: build from generated hashes, then look up from several workers.

    .venv/bin/python benchmarks/breach.py [--entries 100000000] [--workers 4] [--json FILE]

A child process generates `HASH:COUNT` lines (SHA-1 of "breached-<n>", streaming: never all in
memory) into a pipe; this process builds the filter from the pipe with pwdrst.breach.build, as
`build-breach-filter -` does, and reports the time, the file size and its peak resident memory.
Then --workers processes look passwords up in three ways, and each reports its lookup time and its
resident memory (Rss) and proportional share (Pss, from /proc/self/smaps_rollup: a page shared by
4 processes counts a quarter to each) after 1,000 and after --lookups lookups:

- mmap: each worker opens the file (BreachFilter, what the app does);
- copy: each worker deserializes every partition into memory of its own (pyfusefilter's way);
- preload: the parent deserializes, then forks the workers (gunicorn's preload_app).

No figure here is asserted anywhere: machines are shared and noisy.
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time

from pwdrst import breach

ffi, lib = breach.ffi, breach.lib


def generate(fd: int, entries: int) -> None:
    """Write entries lines to a pipe, in batches."""
    with os.fdopen(fd, "wb", buffering=1 << 20) as out:
        for start in range(0, entries, 10_000):
            out.write(
                b"".join(
                    hashlib.sha1(b"breached-%d" % n, usedforsecurity=False).hexdigest().upper().encode()
                    + b":%d\n" % (n % 97 + 1)
                    for n in range(start, min(start + 10_000, entries))
                )
            )


def smaps() -> dict:
    """Return this process's Rss and Pss in MiB."""
    figures = {}
    with open("/proc/self/smaps_rollup", encoding="ascii") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                figures[name] = int(rest.split()[0]) / 1024
    return figures


def copied_filters(path: str):
    """Return every partition deserialized by the library into its own memory (and a lookup function)."""
    mapped = breach.BreachFilter(path)
    filters = []
    for offset, _, _ in mapped.info.table:
        fuse = ffi.new("binary_fuse16_t *")
        lib.binary_fuse16_deserialize(fuse, mapped._base + offset)
        filters.append(fuse)

    def contains(digest: bytes) -> bool:
        return bool(lib.binary_fuse16_contain(int.from_bytes(digest[:8], "big"), filters[digest[0]]))

    return contains, filters


def worker(mode, path, lookups, entries, preloaded, barrier, results):
    """Look up passwords; report times and memory; wait for the others before exiting."""
    if mode == "mmap":
        contains = breach.BreachFilter(path).contains_digest
    elif mode == "copy":
        contains, _keep = copied_filters(path)
    else:
        contains = preloaded
    rng = random.Random(os.getpid())
    listed = [
        hashlib.sha1(b"breached-%d" % rng.randrange(entries), usedforsecurity=False).digest() for _ in range(1000)
    ]
    assert all(contains(d) for d in listed), "a listed hash was not found"
    early = smaps()
    others = [breach.password_digest(f"unlisted-{os.getpid()}-{n}") for n in range(lookups)]
    started = time.perf_counter()
    false_positives = sum(contains(d) for d in others)
    seconds = time.perf_counter() - started
    # The policy's own cost per lookup: SHA-1 of the password and the lookup.
    mapped = breach.BreachFilter(path) if mode == "mmap" else None
    started = time.perf_counter()
    if mapped is not None:
        for n in range(10_000):
            _ = f"policy-{n}" in mapped
    per_password = (time.perf_counter() - started) / 10_000
    late = smaps()
    barrier.wait()  # every worker maps or holds its filter while the others measure
    results.put(
        {
            "mode": mode,
            "lookup_us": seconds / lookups * 1e6,
            "password_us": per_password * 1e6,
            "false_positives": false_positives,
            "after_1000": early,
            "after_all": late,
        }
    )
    barrier.wait()


def run_workers(mode, path, workers, lookups, entries):
    """Start the workers of one mode and return their reports."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(workers), context.Queue()
    preloaded = keep = None
    if mode == "preload":
        preloaded, keep = copied_filters(path)
    processes = [
        context.Process(target=worker, args=(mode, path, lookups, entries, preloaded, barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    reports = [results.get() for _ in processes]
    for process in processes:
        process.join()
    del keep
    return reports


def main(argv=None) -> int:
    """Build, measure, print."""
    parser = argparse.ArgumentParser(description="Benchmark the breach filter.")
    parser.add_argument("--entries", type=int, default=100_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--dir", help="where the filter and the spill files go (default: a temporary folder)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "breach.filter")
        read_fd, write_fd = os.pipe()
        generator = multiprocessing.get_context("fork").Process(target=generate, args=(write_fd, args.entries))
        generator.start()
        os.close(write_fd)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with os.fdopen(read_fd, "rb") as stream:
            report = breach.build(stream, path)
        generator.join()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"build from a pipe, {args.entries:,} generated hashes: {report.summary()}")
        print(
            f"  largest partition {report.largest_partition:,} entries; "
            f"builder peak resident memory {peak:.0f} MiB (before the build: {before:.0f} MiB)"
        )
        figures = {
            "entries": report.entries,
            "bytes": report.size,
            "bits_per_entry": report.bits_per_entry,
            "build_seconds": report.seconds,
            "builder_peak_mib": peak,
            "largest_partition": report.largest_partition,
            "modes": {},
        }
        print(
            f"\n{args.workers} workers each; memory in MiB (Rss / Pss) after 1,000 lookups and after "
            f"{args.lookups:,}; filter file {report.size / 2**20:.0f} MiB"
        )
        print(f"{'mode':<9}{'lookup µs':>10}{'password µs':>13}{'after 1,000':>20}{'after all':>20}{'false pos.':>12}")
        for mode in ("mmap", "copy", "preload"):
            reports = run_workers(mode, path, args.workers, args.lookups, args.entries)
            figures["modes"][mode] = reports
            for r in reports:
                early, late = r["after_1000"], r["after_all"]
                print(
                    f"{mode:<9}{r['lookup_us']:>10.2f}{r['password_us']:>13.2f}"
                    f"{early['Rss']:>11.0f} / {early['Pss']:<6.0f}{late['Rss']:>11.0f} / {late['Pss']:<6.0f}"
                    f"{r['false_positives']:>8} of {args.lookups:,}"
                )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
