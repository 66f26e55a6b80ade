#!/usr/bin/env python3
"""A fake ``adb`` client with fake phones, for testing android_bench without hardware.

Standard library only (it must run under any python3, not just the project's venv).

State lives in the folder named by ``$FAKE_ADB_STATE``:

* ``config.json`` - the devices and the fault switches (see ``tests/fake_adb/fakeadb.py`` for the
  defaults and the README in this folder for every key);
* ``devices/<serial>/`` - each phone's file system (``/data/local/tmp/...`` maps to
  ``devices/<serial>/data/local/tmp/...``), created on first use with thermal zones and cpufreq
  files;
* ``calls.jsonl`` - every invocation's argv, so tests can check what the harness sent.

Several harness processes may call it at once (one sweep per phone): each call holds an exclusive
``flock`` on ``lock`` while it reads and rewrites ``config.json``, so no call loses another's
update (a hung run lets go of it before it sleeps).

It answers like the real client: ``devices [-l]``, ``-s SERIAL``, ``get-state``, ``push``, ``pull``
and ``shell``. ``shell`` joins its arguments with spaces, as adb does, and parses the line with
POSIX quoting rules, so unquoted file names with spaces break here exactly as on a phone. The
shell knows ``getprop``, ``cat``, ``grep -H``, ``ls``, ``mkdir``, ``rm``, ``chmod``, ``echo``,
``pkill``, ``sleep``, ``taskset MASK cmd...``, ``;``/``&&`` and ``2>&1``/``>/dev/null``, and runs a
pushed file that starts with ``#!fake-benchmark_model`` as a stand-in ``benchmark_model`` printing
output in the real formats (see tests/fixtures/benchmark_model/), with timings derived from the
model file size, the thread count and the run name (:func:`fake_avg_us`).
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

# hashlib, shutil and fnmatch are imported where used: this script starts once per adb call, and
# start-up time is most of what a fake call costs.

MARKER = b"#!fake-benchmark_model"
SH = "/system/bin/sh"


# ---------------------------------------------------------------------------------------------
# deterministic fake timings (tests import these to compute expected summaries)
def fake_jitter_us(run_name: str) -> int:
    import hashlib
    return int(hashlib.sha256(run_name.encode()).hexdigest()[:8], 16) % 7


def fake_avg_us(size_bytes: int, threads: int, run_name: str = "") -> float:
    """Mean steady-state time the stand-in benchmark reports for a model file."""
    return 50.0 + size_bytes / (20.0 * max(1, threads)) + fake_jitter_us(run_name)


def cpp_double(x: float) -> str:
    """C++ ostream default formatting of a double (%g, 6 significant digits)."""
    return f"{x:g}"


# ---------------------------------------------------------------------------------------------
class State:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / "config.json"
        self._lock = open(root / "lock", "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # released when this call exits, or by release()
        self.config = json.loads(self.config_path.read_text())

    def release(self) -> None:
        """Let other calls in (before this one sleeps for good); it must not save after this."""
        fcntl.flock(self._lock, fcntl.LOCK_UN)

    def save(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config, indent=2))
        os.replace(tmp, self.config_path)

    def faults(self, dev: dict | None = None) -> dict:
        """The faults of `dev`: its own ``faults`` entry when it has one, else the global ones."""
        if dev is not None and "faults" in dev:
            return dev["faults"]
        return self.config.setdefault("faults", {})

    def visible_devices(self) -> list[dict]:
        return [d for d in self.config["devices"] if not d.get("gone")]

    def fs_root(self, dev: dict) -> Path:
        root = self.root / "devices" / dev["serial"]
        if not root.exists():
            init_device_fs(root, dev)
        return root


def init_device_fs(root: Path, dev: dict) -> None:
    (root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
    temps = dev.get("thermal_c", [36.0, 38.5, 31.0])
    types = dev.get("thermal_types", ["cpu-0-0-usr", "gpuss-0-usr", "battery"])
    for i, (t, kind) in enumerate(zip(temps, types)):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "temp").write_text(f"{int(round(t * 1000))}\n")
        (zone / "type").write_text(kind + "\n")
    for i, khz in enumerate(dev.get("cpufreq_khz", [1785600] * 4 + [2419200] * 4)):
        d = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")


def dev_path(root: Path, path: str) -> Path:
    if not path.startswith("/"):
        path = "/data/local/tmp/" + path  # our fake shell's cwd... close enough
    parts = [p for p in path.split("/") if p and p != "."]
    return root.joinpath(*parts) if parts else root


# ---------------------------------------------------------------------------------------------
# a tiny POSIX-ish tokenizer: quotes, backslashes, ';', '&&', unquoted globs
class Word(str):
    glob = False


def tokenize(line: str) -> list[list[Word]]:
    """Split into commands (separated by ; or &&); words keep an 'unquoted glob' flag."""
    commands: list[list[Word]] = [[]]
    buf: list[str] = []
    in_word = False
    has_glob = False
    i = 0

    def end_word() -> None:
        nonlocal buf, in_word, has_glob
        if in_word:
            w = Word("".join(buf))
            w.glob = has_glob
            commands[-1].append(w)
        buf, in_word, has_glob = [], False, False

    while i < len(line):
        c = line[i]
        if c in " \t\n":
            end_word()
        elif c == "'":
            j = line.find("'", i + 1)
            if j < 0:
                raise SyntaxError("unterminated quoted string")
            buf.append(line[i + 1:j])
            in_word = True
            i = j
        elif c == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                if line[j] == "\\" and j + 1 < len(line) and line[j + 1] in '$`"\\\n':
                    j += 1
                buf.append(line[j])
                j += 1
            if j >= len(line):
                raise SyntaxError("unterminated quoted string")
            in_word = True
            i = j
        elif c == "\\":
            if i + 1 < len(line):
                buf.append(line[i + 1])
                i += 1
            in_word = True
        elif c == ";":
            end_word()
            commands.append([])
        elif c == "&" and line[i:i + 2] == "&&":
            end_word()
            commands.append([Word("&&")])
            i += 1
        elif c == "|":
            raise SyntaxError("pipes are not supported by the fake shell")
        else:
            if c in "*?[":
                has_glob = True
            buf.append(c)
            in_word = True
        i += 1
    end_word()
    return [c for c in commands if c]


def expand(root: Path, word: Word) -> list[str]:
    """Glob-expand an unquoted word against the fake file system (sh keeps it if nothing matches)."""
    if not word.glob or not word.startswith("/"):
        return [str(word)]
    import fnmatch
    matches = [""]
    for part in [p for p in word.split("/") if p]:
        nxt = []
        for m in matches:
            base = dev_path(root, m or "/")
            if any(ch in part for ch in "*?["):
                if base.is_dir():
                    nxt += [f"{m}/{name}" for name in sorted(os.listdir(base)) if fnmatch.fnmatchcase(name, part)]
            else:
                if (base / part).exists():
                    nxt.append(f"{m}/{part}")
        matches = nxt
    return sorted(matches) if matches else [str(word)]


# ---------------------------------------------------------------------------------------------
class Shell:
    def __init__(self, state: State, dev: dict) -> None:
        self.state = state
        self.dev = dev
        self.root = state.fs_root(dev)
        self.out: list[str] = []
        self.err: list[str] = []
        self.line = ""
        self.exe = ""
        self.killed_self = False  # a pkill whose pattern matched this shell's own command line

    def run_line(self, line: str) -> int:
        self.line = line
        try:
            commands = tokenize(line)
        except SyntaxError as e:
            self.err.append(f"{SH}: syntax error: {e}\n")
            return 2
        rc = 0
        for words in commands:
            if self.killed_self:
                break
            if words and words[0] == "&&":
                if rc != 0:
                    continue
                words = words[1:]
            argv: list[str] = []
            devnull_out = devnull_err = False
            for w in words:
                if not w.glob and w in ("2>&1",):
                    continue  # adb already merges when asked to; nothing to do here
                if not w.glob and w in (">/dev/null", "1>/dev/null"):
                    devnull_out = True
                    continue
                if not w.glob and w == "2>/dev/null":
                    devnull_err = True
                    continue
                argv += expand(self.root, w)
            if not argv:
                continue
            out_mark, err_mark = len(self.out), len(self.err)
            rc = self.run(argv)
            if devnull_out:
                del self.out[out_mark:]
            if devnull_err:
                del self.err[err_mark:]
        return rc

    # -- commands --------------------------------------------------------------------------
    def run(self, argv: list[str]) -> int:
        name = argv[0]
        if name in self.state.faults(self.dev).get("missing_commands", []):  # an old toybox
            self.err.append(f"{SH}: {name}: inaccessible or not found\n")
            return 127
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is not None and "/" not in name:
            return handler(argv[1:])
        if "/" in name:
            return self.exec_file(name, argv[1:])
        self.err.append(f"{SH}: {name}: inaccessible or not found\n")
        return 127

    def p(self, path: str) -> Path:
        return dev_path(self.root, path)

    def cmd_getprop(self, args: list[str]) -> int:
        props = self.dev.get("props", {})
        if args:
            self.out.append(props.get(args[0], "") + "\n")
        else:
            self.out += [f"[{k}]: [{v}]\n" for k, v in sorted(props.items())]
        return 0

    def _read_sys(self, path: str) -> str | None:
        f = self.p(path)
        if not f.is_file():
            return None
        text = f.read_text()
        if "/thermal_zone" in path and path.endswith("/temp"):
            cool = int(self.state.config.get("cool_per_read_c", 0) * 1000)
            idx = int(path.split("thermal_zone")[1].split("/")[0])
            base = int(round(self.dev.get("thermal_c", [36.0, 38.5, 31.0])[idx] * 1000))
            if cool:
                f.write_text(f"{max(base, int(text) - cool)}\n")
        return text

    def cmd_cat(self, args: list[str]) -> int:
        rc = 0
        for a in args:
            text = self._read_sys(a)
            if text is None:
                self.err.append(f"cat: {a}: No such file or directory\n")
                rc = 1
            else:
                self.out.append(text)
        return rc

    def cmd_grep(self, args: list[str]) -> int:
        files = [a for a in args if not a.startswith("-")]
        if not files or files[0] != ".":
            self.err.append("grep: the fake grep only supports 'grep -H . FILES'\n")
            return 2
        rc = 1
        for a in files[1:]:
            if a.startswith("/sys/") and self.state.faults(self.dev).get("sysfs_unreadable"):
                self.err.append(f"grep: {a}: Permission denied\n")
                rc = 2
                continue
            text = self._read_sys(a)
            if text is None:
                self.err.append(f"grep: {a}: No such file or directory\n")
                rc = 2
                continue
            for line in text.splitlines():
                if line:
                    self.out.append(f"{a}:{line}\n")
                    rc = 0 if rc == 1 else rc
        return rc

    def cmd_ls(self, args: list[str]) -> int:
        rc = 0
        for a in [x for x in args if not x.startswith("-")] or ["/data/local/tmp"]:
            f = self.p(a)
            if f.is_dir():
                self.out += [n + "\n" for n in sorted(os.listdir(f))]
            elif f.exists():
                self.out.append(a + "\n")
            else:
                self.err.append(f"ls: {a}: No such file or directory\n")
                rc = 1
        return rc

    def cmd_mkdir(self, args: list[str]) -> int:
        parents = "-p" in args
        for a in [x for x in args if not x.startswith("-")]:
            try:
                self.p(a).mkdir(parents=parents, exist_ok=parents)
            except OSError as e:
                self.err.append(f"mkdir: '{a}': {e.strerror}\n")
                return 1
        return 0

    def cmd_rm(self, args: list[str]) -> int:
        force = any(x.startswith("-") and "f" in x for x in args)
        rc = 0
        for a in [x for x in args if not x.startswith("-")]:
            f = self.p(a)
            if f.is_dir():
                import shutil
                shutil.rmtree(f)
            elif f.exists():
                f.unlink()
            elif not force:
                self.err.append(f"rm: {a}: No such file or directory\n")
                rc = 1
        return rc

    def cmd_chmod(self, args: list[str]) -> int:
        mode, paths = args[0], args[1:]
        for a in paths:
            f = self.p(a)
            if not f.exists():
                self.err.append(f"chmod: {a}: No such file or directory\n")
                return 1
            f.chmod(int(mode, 8) if mode.isdigit() else (f.stat().st_mode | 0o111))
        return 0

    def cmd_echo(self, args: list[str]) -> int:
        self.out.append(" ".join(args) + "\n")
        return 0

    def cmd_true(self, args: list[str]) -> int:
        return 0

    def cmd_sleep(self, args: list[str]) -> int:
        time.sleep(float(args[0]))
        return 0

    # Processes: a benchmark run that hangs is entered in the device's process table ("procs" in
    # its config entry) before it sleeps. When the host kills the hung `adb shell`, the entry
    # stays, as benchmark_model keeps running on a real phone, until pkill removes it.
    # faults.survives_pkill: "term" (only pkill -9 ends it) or "all" (nothing does).
    def _proc_matches(self, args: list[str]) -> tuple[list[dict], bool, str | None]:
        import re
        sig9 = any(a in ("-9", "-KILL", "-SIGKILL") for a in args)
        words = [a for a in args if not a.startswith("-")]
        if "-f" not in args or len(words) != 1:
            return [], sig9, "usage: pkill|pgrep -f PATTERN (the fake knows only -f)"
        pattern = re.compile(words[0])
        return [p for p in self.dev.get("procs", []) if pattern.search(p["args"])], sig9, None

    def _own_shell_matches(self, args: list[str]) -> bool:
        import re
        words = [a for a in args if not a.startswith("-")]
        return bool(words) and re.search(words[0], f"sh -c {self.line}") is not None

    def cmd_pgrep(self, args: list[str]) -> int:
        found, _, usage = self._proc_matches(args)
        if usage:
            self.err.append(usage + "\n")
            return 2
        self.out += [f"{p['pid']}\n" for p in found]
        return 0 if found else 1

    def cmd_pkill(self, args: list[str]) -> int:
        found, sig9, usage = self._proc_matches(args)
        if usage:
            self.err.append(usage + "\n")
            return 2
        survives = self.state.faults(self.dev).get("survives_pkill")
        killed = [p for p in found if not (survives == "all" or (survives == "term" and not sig9))]
        self.dev["procs"] = [p for p in self.dev.get("procs", []) if p not in killed]
        if self._own_shell_matches(args):  # the pattern matched the shell running pkill: it dies
            self.killed_self = True
            return 143 if not sig9 else 137
        return 0 if found else 1

    def cmd_taskset(self, args: list[str]) -> int:
        if len(args) < 2:
            self.err.append("taskset: Need 2 arguments\n")
            return 1
        try:
            int(args[0], 16)
        except ValueError:
            self.err.append(f"taskset: bad mask '{args[0]}'\n")
            return 1
        return self.run(args[1:])

    def exec_file(self, path: str, args: list[str]) -> int:
        f = self.p(path)
        if not f.exists():
            self.err.append(f"{SH}: {path}: inaccessible or not found\n")
            return 127
        if f.is_dir():
            self.err.append(f"{SH}: {path}: can't execute: Is a directory\n")
            return 126
        if not os.access(f, os.X_OK):
            self.err.append(f"{SH}: {path}: can't execute: Permission denied\n")
            return 126
        with open(f, "rb") as fh:
            head = fh.read(len(MARKER))
        if self.state.faults(self.dev).get("binary_not_executable") or head != MARKER:
            self.err.append(f"{SH}: {path}: not executable: 64-bit ELF file\n")
            return 126
        self.exe = path
        return FakeBenchmark(self).main(args)


# ---------------------------------------------------------------------------------------------
class FakeBenchmark:
    """Stand-in for benchmark_model, printing the formats of tests/fixtures/benchmark_model/."""

    def __init__(self, shell: Shell) -> None:
        self.sh = shell
        self.state = shell.state
        self.cfg = shell.state.config

    def log(self, text: str, new: bool, level: str = "INFO") -> None:
        self.sh.err.append((f"{level}: " if new else "") + text + "\n")

    def main(self, args: list[str]) -> int:
        flags = {}
        for a in args:
            if a.startswith("--"):
                k, _, v = a[2:].partition("=")
                flags[k] = v
        new = self.cfg.get("format", "new") == "new"
        if "help" in flags:
            self.sh.out.append("usage: benchmark_model\nFlags:\n\t--graph=\tstring\tpath to model file\n"
                               "\t--num_threads=-1\tint32\tnumber of threads\n")
            return 0
        graph = flags.get("graph")
        if not graph:
            self.log("Please specify the name of your TF Lite input file with --graph", new, "ERROR")
            self.log("Benchmarking failed.", new, "ERROR")
            return 1
        model = self.sh.p(graph)
        if not model.is_file():
            self.log("STARTING!", new)
            self.log(f"Failed to mmap model {graph}", new, "ERROR")
            self.log("Benchmarking failed.", new, "ERROR")
            return 1

        dev = self.sh.dev
        dev["runs"] = dev.get("runs", 0) + 1
        n = dev["runs"]
        faults = self.state.faults(dev)
        self.state.save()
        if n in faults.get("hang_on_runs", []):
            procs = dev.setdefault("procs", [])
            procs.append({"pid": 4242 + n, "args": " ".join([self.sh.exe, *args])})
            self.state.save()
            self.state.release()
            time.sleep(3600)
        if n in faults.get("garbage_on_runs", []):
            self.sh.out.append("Segmentation fault\n\x1b[0m?? core dumped ??\nxyzzy 12 34\n")
            return 0

        threads = int(flags.get("num_threads", "1") or 1)
        name = flags.get("benchmark_name", "")
        size = model.stat().st_size
        avg = fake_avg_us(size, threads, name)
        lines = self.render(flags, graph, size, threads, avg, new)
        if lines is None:
            return 1
        disconnect_on = faults.get("disconnect_on_run")
        if disconnect_on == n and faults.get("disconnect_mode", "during") == "during":
            self.sh.err += lines[: len(lines) // 2]
            dev["gone"] = True
            self.state.save()
            return 255
        self.sh.err += lines
        heat = int(self.cfg.get("heat_per_run_c", 0) * 1000)
        if heat:
            for zone in sorted((self.sh.root / "sys/class/thermal").glob("thermal_zone*/temp")):
                zone.write_text(f"{int(zone.read_text()) + heat}\n")
        csv_path = flags.get("profiling_output_csv_file")
        if flags.get("enable_op_profiling") == "true" and csv_path:
            self.sh.p(csv_path).write_text("node type,first,avg_ms,%,cdf%,mem KB,times called,name\n"
                                           f"FULLY_CONNECTED,{avg / 2000:.3f},{avg / 2000:.3f},50%,50%,0,1,dense\n")
        if disconnect_on == n:  # mode "after": this run completes, then the phone goes away
            dev["gone"] = True
            self.state.save()
        if faults.get("unauthorize_on_run") == n:  # the phone stops trusting this computer
            dev["state"] = "unauthorized"
            self.state.save()
        return 0

    def render(self, flags: dict, graph: str, size: int, threads: int, avg: float, new: bool) -> list[str] | None:
        out: list[str] = []

        def log(text: str, level: str = "INFO") -> None:
            out.append((f"{level}: " if new else "") + text + "\n")

        warmup_runs = int(float(flags.get("warmup_runs", "1")))
        num_runs = int(float(flags.get("num_runs", "50")))
        log("STARTING!")
        log("Log parameter values verbosely: [0]")
        log(f"Min num runs: [{num_runs}]")
        log(f"Num threads: [{threads}]")
        log(f"Min warmup runs: [{warmup_runs}]")
        log(f"Graph: [{graph}]")
        if new:
            log("Signature to run: []")
        log(f"#threads used for CPU inference: [{threads}]")
        requested = None
        for key, label, cfg_key in (("use_gpu", "GPU", "gpu"), ("use_nnapi", "NNAPI", "nnapi"),
                                    ("use_xnnpack", "XNNPACK", "xnnpack")):
            if flags.get(key) == "true":
                requested = (label, self.cfg.get(cfg_key, "full"))
                log(f"Use {'xnnpack' if key == 'use_xnnpack' else label if label == 'NNAPI' else 'gpu'}: [1]")
                break
        log(f"Loaded model {graph}")
        if requested:
            label, support = requested
            log(f"Created TensorFlow Lite {label + ' ' if label == 'XNNPACK' else ''}delegate for "
                f"{'CPU' if label == 'XNNPACK' else label}.")
            if new:
                log("Going to apply 1 delegates one after another.")
            if support == "full":
                log(f"Explicitly applied {label} delegate, and the model graph will be completely executed by the delegate.")
            elif support == "partial":
                if flags.get("require_full_delegation") == "true":
                    log("Disallowed CPU fallback detected.", "ERROR")
                    log("Benchmarking failed.", "ERROR")
                    self.sh.err += out
                    return None
                log(f"Explicitly applied {label} delegate, and the model graph will be partially executed by "
                    f"the delegate w/ 2 delegate kernels.")
            elif support == "none":
                if flags.get("require_full_delegation") == "true":
                    log("Disallowed CPU fallback detected.", "ERROR")
                    log("Benchmarking failed.", "ERROR")
                    self.sh.err += out
                    return None
                log(f"Though {label} delegate is explicitly applied, the model graph will not be executed by the delegate.")
            # support == "silent": the delegate prints nothing at all
        log(f"The input model file size (MB): {cpp_double(size / 1e6)}")
        init_us = 1000 + size // 100
        log(f"Initialized session in {cpp_double(init_us / 1e3)}ms.")
        log(f"Running benchmark for at least {warmup_runs} iterations and at least "
            f"{cpp_double(float(flags.get('warmup_min_secs', '0.5')))} seconds but terminate if exceeding 150 seconds.")
        first = int(avg * 3)
        warm_avg = (first + avg * max(0, warmup_runs - 1)) / max(1, warmup_runs)
        if warmup_runs <= 1:
            warm_line = f"count=1 curr={first}"
        else:
            warm_line = (f"count={warmup_runs} first={first} curr={int(avg)} min={int(avg) - 3} max={first} "
                         f"avg={cpp_double(warm_avg)} std={int(avg / 10)}")
        if new:
            warm_line += (f" p5={int(avg) - 3} median={int(avg)} p95={first}" if warmup_runs > 1
                          else f" p5={first} median={first} p95={first}")
        log(warm_line)
        out.append("\n")
        log(f"Running benchmark for at least {num_runs} iterations and at least "
            f"{cpp_double(float(flags.get('min_secs', '1')))} seconds but terminate if exceeding 150 seconds.")
        steady = (f"count={num_runs} first={int(avg) + 2} curr={int(avg)} min={int(avg) - 4} max={int(avg * 1.5)} "
                  f"avg={cpp_double(avg)} std={max(1, int(avg / 50))}")
        if new:
            steady += f" p5={int(avg) - 3} median={int(round(avg))} p95={int(avg * 1.2)}"
        log(steady)
        out.append("\n")
        log(f"Inference timings in us: Init: {init_us}, First inference: {first}, "
            f"Warmup (avg): {cpp_double(warm_avg)}, Inference (avg): {cpp_double(avg)}")
        log("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
            "to the actual memory footprint of the model at runtime. Take the information at your discretion.")
        if new:
            log(f"Memory footprint delta from the start of the tool (MB): init={cpp_double(1.5 + size / 1e6)} "
                f"overall={cpp_double(2.25 + size / 1e6)}")
        else:
            log(f"Peak memory footprint (MB): init={cpp_double(1.5 + size / 1e6)} overall={cpp_double(2.25 + size / 1e6)}")
        return out


# ---------------------------------------------------------------------------------------------
def devices_listing(state: State, long: bool) -> str:
    lines = ["List of devices attached"]
    for i, d in enumerate(state.visible_devices(), start=1):
        if not long:
            lines.append(f"{d['serial']}\t{d['state']}")
            continue
        line = f"{d['serial']:<22} {d['state']}"
        if d["state"] == "device":
            props = d.get("props", {})
            model = props.get("ro.product.model", "").replace(" ", "_")
            line += (f" usb:1-{i} product:{props.get('ro.product.name', 'fake')} model:{model} "
                     f"device:{props.get('ro.product.device', 'fake')} transport_id:{i}")
        else:
            line += f" usb:1-{i} transport_id:{i}"
        lines.append(line)
    return "\n".join(lines) + "\n\n"


#: adb's device errors as older clients print them ("legacy", the default; Debian's adb 29) and as
#: current platform-tools print them ("modern": no "error:", e.g. "adb: device offline").
WORDINGS = {
    "legacy": {"not_found": "error: device '{serial}' not found",
               "none": "error: no devices/emulators found",
               "several": "error: more than one device/emulator",
               "unauthorized": "error: device unauthorized.",
               "offline": "error: device offline"},
    "modern": {"not_found": "adb: device '{serial}' not found",
               "none": "adb: no devices/emulators found",
               "several": "adb: more than one device/emulator",
               "unauthorized": "adb: device unauthorized.",
               "offline": "adb: device offline"},
}


def pick_device(state: State, serial: str | None) -> tuple[dict | None, str]:
    words = WORDINGS[state.config.get("wording", "legacy")]
    visible = state.visible_devices()
    if serial:
        match = [d for d in visible if d["serial"] == serial]
        if not match:
            return None, words["not_found"].format(serial=serial) + "\n"
        dev = match[0]
    else:
        if not visible:
            return None, words["none"] + "\n"
        if len(visible) > 1:
            return None, words["several"] + "\n"
        dev = visible[0]
    if dev["state"] == "unauthorized":
        return None, (words["unauthorized"] + "\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                      "Try 'adb kill-server' if that seems wrong.\n"
                      "Otherwise check for a confirmation dialog on your device.\n")
    if dev["state"] == "offline":
        return None, words["offline"] + "\n"
    return dev, ""


def main(argv: list[str]) -> int:
    root = Path(os.environ.get("FAKE_ADB_STATE", ""))
    if not root or not (root / "config.json").exists():
        sys.stderr.write("fake adb: set FAKE_ADB_STATE to a folder with config.json\n")
        return 1
    with open(root / "calls.jsonl", "a") as f:
        f.write(json.dumps(argv) + "\n")
    state = State(root)
    serial = None
    while argv and argv[0] in ("-s", "-t", "-d", "-e", "-H", "-P"):
        if argv[0] == "-s":
            serial = argv[1]
        argv = argv[2:] if argv[0] in ("-s", "-t", "-H", "-P") else argv[1:]
    if not argv:
        sys.stderr.write("adb: no command\n")
        return 1
    cmd, args = argv[0], argv[1:]
    if cmd == "devices":
        sys.stdout.write(devices_listing(state, "-l" in args))
        return 0
    if cmd in ("start-server", "kill-server"):
        return 0
    if cmd == "version":
        sys.stdout.write("Android Debug Bridge version 1.0.41\nVersion 34.0.5-fake\n")
        return 0
    dev, error = pick_device(state, serial)
    if dev is None:
        sys.stderr.write(error)
        return 1
    fs = state.fs_root(dev)
    if cmd == "get-state":
        sys.stdout.write("device\n")
        return 0
    if cmd == "push":
        local, remote = args[0], args[1]
        if not os.path.isfile(local):
            sys.stderr.write(f"adb: error: cannot stat '{local}': No such file or directory\n")
            return 1
        target = dev_path(fs, remote)
        if remote.endswith("/") or target.is_dir():
            target = target / os.path.basename(local)
        if not target.parent.is_dir():
            sys.stderr.write(f"adb: error: failed to copy '{local}' to '{remote}': remote couldn't create file: "
                             "No such file or directory\n")
            return 1
        import shutil
        shutil.copyfile(local, target)
        target.chmod(os.stat(local).st_mode & 0o777)
        size = target.stat().st_size
        sys.stdout.write(f"{local}: 1 file pushed, 0 skipped. 38.2 MB/s ({size} bytes in 0.001s)\n")
        return 0
    if cmd == "pull":
        remote, local = args[0], args[1]
        src = dev_path(fs, remote)
        if not src.is_file():
            sys.stderr.write(f"adb: error: failed to stat remote object '{remote}': No such file or directory\n")
            return 1
        dst = Path(local)
        if dst.is_dir():
            dst = dst / src.name
        import shutil
        shutil.copyfile(src, dst)
        sys.stdout.write(f"{remote}: 1 file pulled, 0 skipped. 12.1 MB/s ({src.stat().st_size} bytes in 0.001s)\n")
        return 0
    if cmd == "shell":
        sh = Shell(state, dev)
        rc = sh.run_line(" ".join(args))  # adb joins shell arguments with spaces
        state.save()
        sys.stdout.write("".join(sh.out))
        sys.stdout.flush()
        sys.stderr.write("".join(sh.err))
        return rc
    sys.stderr.write(f"adb: unknown command {cmd}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
