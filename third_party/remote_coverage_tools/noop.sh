#!/bin/sh
# No-op stand-in for Bazel's coverage tools (offline stub, see docs/bazel.md).
exit 0
