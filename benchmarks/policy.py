"""Benchmark the password policy: time per check by input shape and length, and agreement with zxcvbn.

    .venv/bin/python benchmarks/policy.py [--repeat 9] [--ordinary 3000] [--json FILE]

Each input is checked `--repeat` times; its time is the median of those runs, so that one run that
the machine's other work (or a garbage collection) happened to slow down does not stand for the
input. The worst case is the slowest input by that measure (it is what bounds a worker); the
slowest single run of all is printed beside it. Both by the wall clock and by this thread's CPU time.
Agreement compares the bounded check's score with full, unbounded zxcvbn (same dictionaries, same
user inputs) on generated ordinary passwords of up to 72 characters (zxcvbn's own limit).
No figure here is asserted anywhere: machines are shared and noisy.
"""

import argparse
import json
import os
import random
import statistics
import string
import sys
import time

from pwdrst import sandbox
from pwdrst.policy import Policy

LENGTHS = (8, 16, 32, 64, 128, 1_000, 10_000)
L33T = "4@8({[<3&6#!|1i7+0$5%2"
WORDS = (
    "zielony parasol rzeka wiatrak kubek herbata słońce okno dom kot pies sowa gwiazda most lampa "
    "monkey dragon password sunshine princess football shadow master summer winter correct horse "
    "battery staple kraków warszawa gdańsk poznań wisła tatry morze"
).split()
NAMES = "Anna Katarzyna Małgorzata Agnieszka Piotr Krzysztof Tomasz Paweł Michał Jan Zofia Wojciech".split()

JAN = sandbox.account_of(sandbox.SAMPLE_PEOPLE[0])  # Jan Kowalski, jkowalski


def shapes(rng: random.Random):
    """Return the input generators by name: each takes a length."""
    printable = string.ascii_letters + string.digits + string.punctuation
    return {
        "random": lambda n: "".join(rng.choice(printable) for _ in range(n)),
        "dictionary": lambda n: "".join(rng.choice(WORDS) for _ in range(n))[:n],
        "l33t-only": lambda n: (L33T * (n // len(L33T) + 1))[:n],
        "repeated": lambda n: ("ab" * n)[:n],
        "digits": lambda n: "".join(rng.choice(string.digits) for _ in range(n)),
    }


def time_checks(policy: Policy, repeat: int, rng: random.Random, clock=time.perf_counter):
    """Return ({shape: {length: median ms}}, slowest single run in ms), by the wall clock or another.

    time.thread_time measures this thread's CPU time: what the machine's other processes do not add.
    """
    table = {}
    slowest = 0.0
    for name, make in shapes(rng).items():
        row = {}
        for length in LENGTHS:
            password = make(length)
            runs = []
            for _ in range(repeat):
                started = clock()
                policy.check(password, JAN)
                runs.append((clock() - started) * 1000)
            row[length] = statistics.median(runs)
            slowest = max(slowest, *runs)
        table[name] = row
    return table, slowest


def ordinary_passwords(rng: random.Random, count: int):
    """Generate passwords of the kinds people choose."""
    makers = [
        lambda: rng.choice(WORDS) + str(rng.randint(0, 9999)),
        lambda: rng.choice(WORDS).capitalize() + str(rng.randint(1950, 2030)) + rng.choice("!.?#"),
        lambda: rng.choice(NAMES) + str(rng.randint(1950, 2030)),
        lambda: "-".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))),
        lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))),
        lambda: "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(8, 20))),
        lambda: rng.choice(WORDS).replace("a", "@").replace("o", "0").replace("e", "3") + str(rng.randint(0, 99)),
        lambda: rng.choice(["qwerty", "asdfgh", "zxcvbn", "123456", "qazwsx"]) + rng.choice(WORDS),
        lambda: rng.choice(NAMES).lower() + rng.choice(WORDS) + rng.choice(["1", "12", "123", "!"]),
    ]
    passwords = []
    while len(passwords) < count:
        candidate = rng.choice(makers)()
        if 0 < len(candidate) <= 72:
            passwords.append(candidate)
    return passwords


def agreement(policy: Policy, passwords):
    """Return (share of equal scores, list of disagreements) between the bounded check and zxcvbn."""
    from zxcvbn import zxcvbn

    inputs = policy._user_inputs(JAN)
    bounded = [policy.check(p, JAN).score for p in passwords]
    # Full zxcvbn on the whole password: outside matcher.score(), zxcvbn.matching holds its own matchers.
    full = [zxcvbn(p, user_inputs=inputs)["score"] for p in passwords]
    differ = [(p, b, f) for p, b, f in zip(passwords, bounded, full, strict=True) if b != f]
    return 1 - len(differ) / len(passwords), differ


def main(argv=None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description="Benchmark the password policy.")
    parser.add_argument("--repeat", type=int, default=9, help="runs of each input (its time is their median)")
    parser.add_argument("--ordinary", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    policy = Policy(organisation_words=["Uniwersytet", "Przykładowy", "uni", "example"])
    policy.check("warm-up-the-dictionaries", JAN)

    table, slowest = time_checks(policy, args.repeat, rng)
    print(f"policy check, median of {args.repeat} runs, milliseconds (wall clock)")
    print(f"{'shape':<12}" + "".join(f"{n:>9}" for n in LENGTHS))
    for name, row in table.items():
        print(f"{name:<12}" + "".join(f"{row[n]:>9.2f}" for n in LENGTHS))
    worst = max(max(row.values()) for row in table.values())
    print(f"worst case: {worst:.1f} ms (the slowest input; its median run)")
    print(f"slowest single run: {slowest:.1f} ms")
    # The same inputs timed by this thread's CPU: what a busy machine's other processes do not add.
    cpu_table, cpu_slowest = time_checks(policy, args.repeat, random.Random(args.seed), clock=time.thread_time)
    cpu_worst = max(max(row.values()) for row in cpu_table.values())
    print(f"worst case in CPU time: {cpu_worst:.1f} ms (slowest single run {cpu_slowest:.1f} ms)")
    print(f"1-minute load average: {os.getloadavg()[0]:.2f}")

    passwords = ordinary_passwords(rng, args.ordinary)
    share, differ = agreement(policy, passwords)
    print(f"\nagreement with full zxcvbn on {len(passwords)} ordinary passwords: {share * 100:.2f}%")
    for password, bounded, full in differ[:10]:
        print(f"  differs: {password!r}: bounded {bounded}, full {full}")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "times_ms": table,
                    "worst_ms": worst,
                    "slowest_run_ms": slowest,
                    "cpu_worst_ms": cpu_worst,
                    "cpu_slowest_run_ms": cpu_slowest,
                    "load_average": os.getloadavg()[0],
                    "agreement": share,
                    "ordinary": len(passwords),
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
