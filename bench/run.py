"""``make bench``: run the benchmarks and print their figures.

Options: ``--people N`` (default 1,000,000), ``--shards N`` (default 2),
``--naive-sample N`` (the naive loop decides 1/N of the people; default 50),
``--messages N`` (delivery benchmark, per channel; default 5,000),
``--only arbitration|delivery|identity|web``; ``--samples N`` (web benchmark: calls per page; default 60).
"""

from __future__ import annotations

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--naive-sample", type=int, default=50)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--only", choices=["arbitration", "delivery", "identity", "web"], default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.only in (None, "arbitration"):
        from bench import arbitration

        arbitration.main(people=args.people, shards=args.shards, naive_sample=args.naive_sample)
    if args.only in (None, "identity"):
        from bench import identity

        identity.main(people=args.people, shards=args.shards)
    if args.only in (None, "delivery"):
        from bench import delivery

        delivery.main(messages=args.messages)
    if args.only in (None, "web"):
        from bench import web

        web.main(people=args.people, samples=args.samples)


if __name__ == "__main__":
    main()
