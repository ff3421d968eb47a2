#!/usr/bin/env python3
"""Regenerate genesis.json from the demo port's members and the compiled contracts.

    .venv/bin/python scripts/make_genesis.py              # rebuild contracts/build, write genesis.json
    .venv/bin/python scripts/make_genesis.py --check      # exit 1 if genesis.json is stale
    .venv/bin/python scripts/make_genesis.py --validators 4 --out /tmp/genesis.json

The members and validators use PUBLIC development keys (node.genesis.dev_key): the file is
for the demo port and tests, never for a production network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devnet.members import demo_members
from node.genesis import build_genesis, write_genesis

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=1, help="validator count (default 1)")
    parser.add_argument("--out", default=str(ROOT / "genesis.json"))
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if args.check:
        try:
            current = json.loads(Path(args.out).read_text())
        except (OSError, ValueError) as exc:
            print(f"cannot read {args.out}: {exc}", file=sys.stderr)
            return 1
        members, validators = demo_members(len(current["portledger"]["validators"]))
        if current != build_genesis(members, validators):
            print(f"{args.out} is stale: run .venv/bin/python scripts/make_genesis.py", file=sys.stderr)
            return 1
        print(f"{args.out} matches the contracts")
        return 0
    members, validators = demo_members(args.validators)
    doc = build_genesis(members, validators)
    write_genesis(doc, args.out)
    print(f"wrote {args.out}: chain {doc['config']['chainId']}, {len(validators)} validator(s), "
          f"{len(doc['alloc'])} system contracts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
