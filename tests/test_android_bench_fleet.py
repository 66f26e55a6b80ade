"""Several phones at once (``run --serial A,B`` / ``--all_devices``): one sweep per phone in
parallel, each with its own results folder, resume state and CPU profile; a phone that drops out
mid-sweep is reported for that phone while the other finishes; the device summary names the
phone of every number; the exit status says that some phone did not finish."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fake_adb"))
import fakeadb  # noqa: E402

from android_bench.cli import main as cli_main  # noqa: E402
from android_bench.results import ResultsLog, load_meta  # noqa: E402
from android_bench.summary import read_csv  # noqa: E402

QUICK = ["--num_runs", "5", "--min_secs", "0", "--warmup_min_secs", "0", "--repeats", "2"]


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    return fakeadb.fake_models_dir(tmp_path)


@pytest.fixture()
def two_phones(tmp_path: Path):
    pixel8 = dict(fakeadb.DEFAULT_PROPS, **{"ro.product.model": "Pixel 8", "ro.soc.model": "GS301"})
    return fakeadb.install(tmp_path, [fakeadb.device("FAKE0001"),
                                      fakeadb.device("FAKE0002", props=pixel8)])


def _run(fake, models_dir: Path, out: Path, *extra: str) -> int:
    binary = fakeadb.fake_benchmark_binary(out.parent)
    return cli_main(["run", "--models_dir", str(models_dir), "--out", str(out), "--benchmark_binary",
                     str(binary), "--adb", str(fake.adb), *QUICK, *extra])


def test_one_phone_drops_out_the_other_finishes_and_the_rerun_resumes_it(tmp_path, models_dir,
                                                                         two_phones, capsys):
    out = tmp_path / "out"
    two_phones.set_device_faults("FAKE0002", disconnect_on_run=2, disconnect_mode="during")
    rc = _run(two_phones, models_dir, out, "--serial", "FAKE0001,FAKE0002")
    captured = capsys.readouterr()
    assert rc == 3  # the disconnection status of the phone that dropped out
    assert [r["status"] for r in ResultsLog(out / "FAKE0001").read()] == ["ok"] * 6
    assert len(ResultsLog(out / "FAKE0002").read()) == 1
    assert "[FAKE0002] error: device FAKE0002 disconnected" in captured.err
    assert "1 of 6 runs are saved" in captured.err and "[FAKE0001] 6 runs done now" in captured.out
    assert "FAKE0001: finished (exit 0)" in captured.out
    assert "FAKE0002: disconnected or unauthorized (reconnect it or accept the prompt, then rerun) " \
        "(exit 3)" in captured.out
    assert "1 of 2 phones did not finish: FAKE0002" in captured.out
    statuses = json.loads((out / "devices.json").read_text())
    assert {s: e["exit_status"] for s, e in statuses.items()} == {"FAKE0001": 0, "FAKE0002": 3}
    # each phone's own folder: its facts, its own summaries
    assert load_meta(out / "FAKE0001")["device"]["model"] == "Pixel 7"
    assert load_meta(out / "FAKE0002")["device"]["model"] == "Pixel 8"
    assert (out / "FAKE0001" / "summary_combinations.csv").exists()
    rows = read_csv(out / "summary_devices.csv")
    assert sorted((r["device"], r["device_model"], r["combination"]) for r in rows) == [
        ("FAKE0001", "Pixel 7", "a"), ("FAKE0001", "Pixel 7", "b"), ("FAKE0001", "Pixel 7", "c"),
        ("FAKE0002", "Pixel 8", rows[-1]["combination"])]
    mine = {r["combination"]: r for r in read_csv(out / "FAKE0001" / "summary_combinations.csv")}
    for r in rows:
        if r["device"] == "FAKE0001":
            assert r["mean_ms"] == mine[r["combination"]]["mean_ms"]
    assert "| FAKE0002 | Pixel 8 | GS301 | disconnected" in (out / "summary_devices.md").read_text()

    two_phones.reconnect()
    rc = _run(two_phones, models_dir, out, "--serial", "FAKE0001,FAKE0002")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "[FAKE0001] all 6 runs already done" in captured.out
    assert "[FAKE0002] resuming: 1 of 6 runs already done" in captured.out
    assert len(ResultsLog(out / "FAKE0002").read()) == 6
    assert len(read_csv(out / "summary_devices.csv")) == 6
    assert cli_main(["summarize", "--out", str(out)]) == 0
    assert len(read_csv(out / "summary_devices.csv")) == 6


def test_all_devices_sweeps_every_ready_phone_and_skips_the_others(tmp_path, models_dir, capsys):
    fake = fakeadb.install(tmp_path, [fakeadb.device("FAKE0001"), fakeadb.device("FAKE0002"),
                                      fakeadb.device("LOCKED01", state="unauthorized")])
    out = tmp_path / "out"
    assert _run(fake, models_dir, out, "--all_devices", "--repeats", "1") == 0
    printed = capsys.readouterr().out
    assert "skipping LOCKED01 (unauthorized): not ready" in printed
    assert sorted(json.loads((out / "devices.json").read_text())) == ["FAKE0001", "FAKE0002"]
    assert fake.runs("FAKE0001") == fake.runs("FAKE0002") == 3


def test_each_phone_gets_its_own_cpu_profile_from_a_folder(tmp_path, models_dir, two_phones):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "FAKE0001.json").write_text('{"big": [4, 5, 6, 7], "little": [0, 1, 2, 3]}')
    (profiles / "FAKE0002.json").write_text('{"big": [6, 7], "little": [0, 1, 2, 3, 4, 5]}')
    out = tmp_path / "out"
    assert _run(two_phones, models_dir, out, "--serial", "FAKE0001,FAKE0002", "--repeats", "1",
                "--cpu_profile", str(profiles), "--affinity", "big") == 0
    masks = {}
    for call in two_phones.calls():
        if "shell" in call and "taskset" in call[-1]:
            masks.setdefault(call[1], set()).add(call[-1].split()[1])
    assert masks == {"FAKE0001": {"f0"}, "FAKE0002": {"c0"}}
    assert load_meta(out / "FAKE0002")["cpu_profile"] == {"big": [6, 7], "little": [0, 1, 2, 3, 4, 5]}


def test_a_serial_that_is_not_connected_fails_alone(tmp_path, models_dir, two_phones, capsys):
    out = tmp_path / "out"
    rc = _run(two_phones, models_dir, out, "--serial", "FAKE0001,NOPE", "--repeats", "1")
    captured = capsys.readouterr()
    assert rc == 3 and "NOPE: disconnected or unauthorized" in captured.out  # as for one phone
    assert "[NOPE] error: " in captured.err
    assert len(ResultsLog(out / "FAKE0001").read()) == 3


@pytest.mark.parametrize("extra, message", [
    (["--serial", "FAKE0001,FAKE0001"], "--serial names FAKE0001 more than once"),
    (["--serial", "FAKE0001,a/b"], "--serial 'a/b' cannot name a results folder"),
    (["--serial", "FAKE0001,FAKE0002", "--cpu_profile", "{profiles}"],
     "has no profile for {profiles}/FAKE0002.json (one SERIAL.json per phone)"),
    (["--serial", "FAKE0001", "--cpu_profile", "{profiles}"],
     "a folder of SERIAL.json profiles is for several phones at once"),
])
def test_bad_requests_for_several_phones_are_refused_before_any_phone_runs(
        tmp_path, models_dir, two_phones, capsys, extra, message):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "FAKE0001.json").write_text('{"big": [4, 5, 6, 7]}')
    extra = [e.format(profiles=profiles) for e in extra]
    assert _run(two_phones, models_dir, tmp_path / "out", *extra) == 2
    assert message.format(profiles=profiles) in capsys.readouterr().err
    assert two_phones.runs("FAKE0001") == two_phones.runs("FAKE0002") == 0


def test_all_devices_with_no_ready_phone_is_a_setup_error(tmp_path, models_dir, capsys):
    fake = fakeadb.install(tmp_path, [fakeadb.device("LOCKED01", state="unauthorized")])
    assert _run(fake, models_dir, tmp_path / "out", "--all_devices") == 2
    assert "--all_devices: no phone is ready" in capsys.readouterr().err


def test_a_single_phones_results_folder_is_not_taken_for_several(tmp_path, models_dir, two_phones,
                                                                capsys):
    out = tmp_path / "out"
    assert _run(two_phones, models_dir, out, "--serial", "FAKE0001", "--repeats", "1") == 0
    assert _run(two_phones, models_dir, out, "--serial", "FAKE0001,FAKE0002") == 2
    assert "holds a single phone's sweep" in capsys.readouterr().err
