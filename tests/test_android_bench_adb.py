"""android_bench.adb: device listing and selection, quoting, facts; against the fake adb."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fake_adb"))
import fakeadb  # noqa: E402

from android_bench.adb import (Adb, DeviceEntry, connect, parse_devices, quote_command,  # noqa: E402
                               select_device)
from android_bench.errors import (AdbNotFoundError, DeviceDisconnectedError, DeviceStateError,  # noqa: E402
                                  MultipleDevicesError, NoDeviceError, UnauthorizedDeviceError)

ODD_NAME = "it's a \"model\" v2.tflite"

DEVICES_L = """* daemon not running; starting now at tcp:5037
* daemon started successfully
List of devices attached
R58M1234ABC            device usb:1-1 product:beyond1lteeea model:SM_G973F device:beyond1 transport_id:1
0A1B2C3D4E             unauthorized usb:1-2 transport_id:2
emulator-5554          offline transport_id:3
ZY22FLXX9              no permissions (user in plugdev group; are your udev rules wrong?); see [http://developer.android.com/tools/device.html] usb:1-3 transport_id:4

"""


def test_quote_command_survives_the_device_shell_split():
    argv = ["/data/local/tmp/pam_tf_bench/benchmark_model", f"--graph=/data/local/tmp/x/{ODD_NAME}", "--num_threads=4"]
    line = quote_command(argv)
    assert shlex.split(line) == argv
    assert "'--graph=/data/local/tmp/x/it'\"'\"'s a \"model\" v2.tflite'" in line


def test_parse_devices_reads_every_state():
    devices = parse_devices(DEVICES_L)
    assert [(d.serial, d.state) for d in devices] == [
        ("R58M1234ABC", "device"), ("0A1B2C3D4E", "unauthorized"), ("emulator-5554", "offline"),
        ("ZY22FLXX9", "no permissions")]
    assert devices[0].attrs["model"] == "SM_G973F" and devices[0].attrs["transport_id"] == "1"


def test_no_device_message():
    with pytest.raises(NoDeviceError) as e:
        select_device([])
    assert str(e.value) == ("no Android device found: connect a phone with USB debugging enabled "
                            "(Settings > Developer options) and check that `adb devices` lists it")


def test_unauthorized_device_message():
    with pytest.raises(UnauthorizedDeviceError) as e:
        select_device([DeviceEntry("0A1B2C3D4E", "unauthorized")])
    assert str(e.value) == ("device 0A1B2C3D4E is unauthorized: unlock the phone and accept the 'Allow USB "
                            "debugging?' RSA key prompt (tick 'Always allow from this computer'), then run again")


def test_several_devices_without_serial_lists_them():
    with pytest.raises(MultipleDevicesError) as e:
        select_device(parse_devices(DEVICES_L)[:2])
    assert str(e.value) == ("2 devices connected: R58M1234ABC (device, SM_G973F), 0A1B2C3D4E (unauthorized); "
                            "choose one with --serial SERIAL")


def test_serial_not_connected_message():
    with pytest.raises(DeviceDisconnectedError) as e:
        select_device(parse_devices(DEVICES_L)[:1], serial="NOPE")
    assert str(e.value) == "device NOPE not found; connected devices: R58M1234ABC (device, SM_G973F)"


def test_offline_device_is_refused():
    with pytest.raises(DeviceStateError, match="is 'offline', not ready"):
        select_device([DeviceEntry("emulator-5554", "offline")])


def test_serial_picks_one_of_several_fake_devices(tmp_path):
    fake = fakeadb.install(tmp_path, [fakeadb.device("FAKE0001"), fakeadb.device("FAKE0002")])
    with pytest.raises(MultipleDevicesError, match="FAKE0001 .*FAKE0002 .*choose one with --serial"):
        connect(str(fake.adb))
    adb = connect(str(fake.adb), serial="FAKE0002")
    assert adb.serial == "FAKE0002" and adb.get_state() == "device"
    assert all(call[:2] == ["-s", "FAKE0002"] for call in fake.calls()[-1:])


def test_unauthorized_fake_device_error_from_adb_itself(tmp_path):
    fake = fakeadb.install(tmp_path, [fakeadb.device("FAKE0001", state="unauthorized")])
    with pytest.raises(UnauthorizedDeviceError, match="accept the 'Allow USB debugging\\?' RSA key prompt"):
        Adb(str(fake.adb), "FAKE0001").shell(["getprop"])


def test_file_name_with_spaces_and_quotes_reaches_the_device_intact(tmp_path):
    fake = fakeadb.install(tmp_path)
    local = tmp_path / ODD_NAME
    local.write_bytes(b"x" * 100)
    adb = connect(str(fake.adb))
    remote = f"/data/local/tmp/{ODD_NAME}"
    adb.push(local, remote)
    listed = adb.shell(["ls", remote])
    assert listed.returncode == 0 and listed.stdout.strip() == remote
    # The same command unquoted falls apart in the device shell, as on a real phone.
    broken = adb.shell(f"ls {remote}")
    assert broken.returncode != 0
    assert ["-s", "FAKE0001", "shell", quote_command(["ls", remote])] in fake.calls()


def test_device_facts_come_from_getprop(tmp_path):
    fake = fakeadb.install(tmp_path)
    facts = connect(str(fake.adb)).device_facts()
    assert facts["model"] == "Pixel 7" and facts["soc"] == "GS201" and facts["android_release"] == "14"
    assert facts["abi"] == "arm64-v8a" and facts["board_platform"] == "gs201" and facts["serial"] == "FAKE0001"


def test_missing_adb_executable(tmp_path):
    with pytest.raises(AdbNotFoundError, match="adb not found"):
        Adb(str(tmp_path / "no-adb")).devices()


def test_vanished_device_maps_to_disconnect_error(tmp_path):
    fake = fakeadb.install(tmp_path, [fakeadb.device("FAKE0001", gone=True)])
    with pytest.raises(DeviceDisconnectedError, match="error: device 'FAKE0001' not found"):
        Adb(str(fake.adb), "FAKE0001").shell(["true"])
    with pytest.raises(DeviceDisconnectedError, match="error: no devices/emulators found"):
        Adb(str(fake.adb)).shell(["true"])
