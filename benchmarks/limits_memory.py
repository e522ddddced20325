"""Per-check CPU cost of the in-memory limit store with 0 and with 20,000 keys held.

    .venv/bin/python benchmarks/limits_memory.py [--keys 20000] [--checks 200] [--gap 0.015]

For limits' own MemoryStorage and for pwdrst's FlatMemoryStorage: hold N keys (clients seen in
the window), then make checks spaced by --gap seconds, as requests arrive, and report the process
CPU time per check (all threads: limits' MemoryStorage sweeps every key in a thread after a hit)
and its ratio to the same store holding no keys. No test asserts any of it.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from limits import parse  # noqa: E402
from limits.storage import MemoryStorage  # noqa: E402
from limits.strategies import FixedWindowRateLimiter  # noqa: E402

from pwdrst.ratelimit import FlatMemoryStorage  # noqa: E402


def per_check_cpu(storage_class, keys: int, checks: int, gap: float) -> float:
    """Return the CPU seconds per check with keys held."""
    strategy = FixedWindowRateLimiter(storage_class())
    item = parse("30 per 15 minutes")
    for n in range(keys):
        strategy.hit(item, "pwdrst", "login-fail-address", f"198.51.{n // 256}.{n % 256}")
    time.sleep(0.2)
    start = time.process_time()
    for n in range(checks):
        strategy.hit(item, "pwdrst", "link-use", f"203.0.113.{n % 200}")
        time.sleep(gap)
    time.sleep(0.1)  # let a sweep started by the last check finish inside the measurement
    return (time.process_time() - start) / checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.015)
    args = parser.parse_args(argv)
    for storage_class in (MemoryStorage, FlatMemoryStorage):
        empty = per_check_cpu(storage_class, 0, args.checks, args.gap)
        held = per_check_cpu(storage_class, args.keys, args.checks, args.gap)
        print(
            f"{storage_class.__name__:18} 0 keys {empty * 1e6:8.1f} µs/check   "
            f"{args.keys} keys {held * 1e6:8.1f} µs/check   ratio {held / empty:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
