"""``python -m android_bench``: see :mod:`android_bench.cli`."""
import sys

from android_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
