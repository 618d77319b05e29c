"""Deployment targets this machine cannot run: listed with what each takes, and a converted model checked against
each (real TFLite flatbuffers converted from the digits Keras model)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import DataError
from workbench.profiling.device import accelerators, board

from .conftest import FAST

ROOT = Path(__file__).resolve().parent.parent
SEED_TARGETS = {"android-nnapi", "ios-coreml", "hexagon", "tflite-gpu", "edgetpu", "jetson", "tfjs-web",
                "tflite-micro"}


def test_every_target_the_seed_names_is_listed_with_no_field_left_silent():
    frame = wb.targets.table()
    assert set(frame["target"]) == SEED_TARGETS
    assert not (frame.isna() | (frame == "")).any().any()


def test_the_readme_carries_the_targets_table():
    assert wb.targets.markdown() in (ROOT / "README.md").read_text(), "README's targets table is stale"


@pytest.fixture(scope="module")
def flatbuffers(tmp_path_factory):
    study = wb.Study(*wb.zoo.load("digits-keras"), timing=FAST, measure_memory=False)
    folder = tmp_path_factory.mktemp("targets")
    out = {}
    for spec in ("tflite", "int8-static"):
        path = folder / f"{spec}.tflite"
        path.write_bytes(study.handle(spec).payload)
        out[spec] = path
    return out


def test_an_int8_model_and_a_float_model_get_the_verdicts_their_targets_give(flatbuffers):
    int8 = {c.target: c for c in wb.targets.check(flatbuffers["int8-static"])}
    fp32 = {c.target: c for c in wb.targets.check(flatbuffers["tflite"])}
    assert fp32["edgetpu"].verdict == "incompatible" and "not int8" in " ".join(fp32["edgetpu"].findings)
    assert int8["edgetpu"].verdict in ("compatible", "partly")
    assert fp32["hexagon"].verdict == "incompatible" and int8["hexagon"].verdict in ("compatible", "partly")
    assert fp32["ios-coreml"].verdict == "compatible" and int8["ios-coreml"].verdict in ("incompatible", "partly")
    assert fp32["tflite-gpu"].verdict == "compatible"
    assert fp32["android-nnapi"].verdict == int8["android-nnapi"].verdict == "compatible"
    assert int8["tflite-micro"].verdict == "compatible" and "KB of 1024 KB flash" in int8["tflite-micro"].findings[0]
    assert "float op" in " ".join(fp32["tflite-micro"].findings)
    assert int8["jetson"].verdict == "not checked"
    for checks in (int8, fp32):
        assert all(c.verdict in wb.targets.VERDICTS and c.findings for c in checks.values())


def test_the_cli_lists_targets_and_checks_a_file(flatbuffers):
    listed = subprocess.run([sys.executable, "-m", "workbench", "targets", "--json"], capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert {row["target"] for row in json.loads(listed.stdout)} == SEED_TARGETS
    checked = subprocess.run([sys.executable, "-m", "workbench", "targets", "--check", str(flatbuffers["tflite"])],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert "edgetpu" in checked.stdout and "incompatible" in checked.stdout


@pytest.mark.parametrize("bad, fragment", [("net.onnx", "convert it first"), ("missing.tflite", "no model file"),
                                           (b"not a flatbuffer", "not a readable TFLite flatbuffer")])
def test_what_cannot_be_checked_says_why(bad, fragment, tmp_path):
    if bad == "net.onnx":
        (tmp_path / bad).write_bytes(b"x")
    with pytest.raises(DataError, match=fragment):
        wb.targets.check(tmp_path / bad if isinstance(bad, str) else bad)


def test_a_jetson_is_recognised_from_its_files(tmp_path):
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\0")
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 3.0, GCID: 1, BOARD: generic\n")
    assert board("aarch64", str(tmp_path)) == "NVIDIA Jetson: NVIDIA Jetson AGX Orin Developer Kit (L4T R36.3.0)"
    assert board("x86_64", str(tmp_path)) == ""
    assert board("aarch64", str(tmp_path / "nothing")) == ""


def test_tpus_are_named_when_present_and_their_absence_said(tmp_path):
    assert accelerators(str(tmp_path)) == ()
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "accel0").write_text("")
    (tmp_path / "dev" / "apex_0").write_text("")
    usb = tmp_path / "sys" / "bus" / "usb" / "devices" / "2-1"
    usb.mkdir(parents=True)
    (usb / "idVendor").write_text("18d1\n")
    (usb / "idProduct").write_text("9302\n")
    found = accelerators(str(tmp_path))
    assert found[0].startswith("Cloud TPU (1 device(s); bf16") and "PCIe (1)" in found[1] and "USB (1)" in found[2]
    assert "TPU        none (no Cloud TPU or Coral Edge TPU found)" in wb.device(measure=False).summary()
