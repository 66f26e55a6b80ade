"""Where user-given paths point, whether run directly or through `bazel run`.

`bazel run //tools:merge_and_export -- --out=runs/x` executes inside Bazel's runfiles tree, not in
the folder the user typed the command in; Bazel exports that folder (the workspace root) as
$BUILD_WORKSPACE_DIRECTORY. (Bazel gives no variable for a sub-folder the user was in: `bazel run`
from a sub-folder resolves against the workspace root.)

    from tools._paths import user_path
    out = user_path(FLAGS.out)
"""
from __future__ import annotations

import os


def user_path(p: str) -> str:
    """Return `p` as the user meant it: absolute paths and `~` as is (expanded), relative paths
    against $BUILD_WORKSPACE_DIRECTORY under `bazel run`, else unchanged (relative to the cwd).

    Empty strings are returned unchanged, so "flag not given" stays falsy.
    """
    if not p:
        return p
    p = os.path.expanduser(p)
    if os.path.isabs(p):
        return p
    base = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if base:
        return os.path.join(base, p)
    return p
