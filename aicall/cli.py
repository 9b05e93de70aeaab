"""Placeholder entry point until aicall is built."""

import sys


def main() -> int:
    print("aicall: not implemented yet; see the open issue that builds it", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
