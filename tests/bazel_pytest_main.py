"""Runs plain pytest files as one Bazel py_test (see tests/BUILD and docs/bazel.md).

Usage (what tests/BUILD passes): bazel_pytest_main.py tests/test_x.py [more pytest args]
Exits with pytest's code, so "no tests collected" (5) fails the Bazel test too.
"""
import os
import sys

import pytest


def main(argv: list[str]) -> int:
    args = list(argv) + ["-q", "-p", "no:cacheprovider"]
    tmp = os.environ.get("TEST_TMPDIR")  # Bazel's per-test scratch folder
    if tmp:
        args.append("--basetemp=" + os.path.join(tmp, "pytest"))
    xml = os.environ.get("XML_OUTPUT_FILE")  # Bazel's test.xml, when Bazel asks for it
    if xml:
        args.append("--junitxml=" + xml)
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
