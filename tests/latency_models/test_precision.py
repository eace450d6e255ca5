"""Devices measure at a precision: FP16 and INT8 (static QDQ) conversions of the exported
graph, their output SNR against FP32, fingerprints that keep one precision's facts from
another's; and the ``torch`` device kind that times modules in PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
import torch
from latency_support import NANOSD, QUICK, SMALL_YAML

from nanosd_nas import latency_models, spaces
from nanosd_nas.latency_models import (
    Device,
    DeviceRegistry,
    FileLatencyStore,
    LatencyInputError,
    LocalProfiler,
    TorchProfiler,
    measure_components,
)
from nanosd_nas.latency_models._calibrate import build_block_table
from nanosd_nas.latency_models._precision import (
    ConversionError,
    convert,
    feeds_of,
    output_snr_db,
)
from nanosd_nas.latency_models._reference import (
    INT8_REFERENCE,
    INT8_REFERENCE_CHANNELS,
    reference_model,
)

SPEC = NANOSD.spec(next(NANOSD.enumerate()), "mini")


def _exported_unet(folder: Path) -> tuple[Path, dict]:
    model = spaces.build(SPEC)
    inputs = model.example_inputs()["unet"]
    path = folder / "unet.onnx"
    names = spaces.export_onnx_component(model.components()["unet"], inputs, path, "unet")
    return path, feeds_of(path, names, inputs)


def test_int8_is_a_qdq_graph_and_fp16_a_half_graph_both_close_to_fp32(tmp_path):
    path, feeds = _exported_unet(tmp_path)
    int8 = convert(path, "int8", feeds)
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp16 = convert(path, "fp16", feeds)
    types = {t.data_type for t in onnx.load(str(fp16)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert convert(path, "fp32", feeds) == path
    snr8, snr16 = output_snr_db(path, int8, feeds), output_snr_db(path, fp16, feeds)
    # Half precision loses far less than 8-bit integers, and neither is noise.
    assert 10.0 < snr8 < snr16
    assert output_snr_db(path, path, feeds) == 300.0


def test_an_int8_measurement_says_its_precision_and_reports_its_snr():
    int8 = LocalProfiler(protocol=QUICK, precision="int8")
    measured = measure_components(SPEC, int8, scale="mini", components=["unet"])
    assert measured["unet"].fingerprint["precision"] == "int8"
    assert int8.host_fingerprint()["precision"] == "int8"
    [(component, snr)] = int8.output_snr
    assert component == "unet" and 10.0 < snr < 300.0
    fp32 = LocalProfiler(protocol=QUICK)
    plain = measure_components(SPEC, fp32, scale="mini", components=["unet"])
    assert "precision" not in plain["unet"].fingerprint and fp32.output_snr == []
    # Calibration reads latencies alone: asked not to check outputs, the INT8 profiler
    # measures at INT8 and runs no FP32 comparison.
    unchecked = LocalProfiler(protocol=QUICK, precision="int8")
    quiet = measure_components(SPEC, unchecked, scale="mini", components=["unet"],
                               check_output=False)
    assert quiet["unet"].fingerprint["precision"] == "int8" and unchecked.output_snr == []


def test_blocks_measured_at_fp32_are_measured_again_at_int8(tmp_path):
    store = FileLatencyStore(home=tmp_path)
    space = spaces.Space(name="nanosd-e1", description="", base=NANOSD.base,
                         dimensions=[d for d in NANOSD.dimensions if d.name == "E1"])
    fp32 = LocalProfiler(protocol=QUICK, references=store)
    first = build_block_table(space, "mini", fp32, statistic="normalised_ms", store=store)
    again = build_block_table(space, "mini", LocalProfiler(protocol=QUICK, references=store),
                              statistic="normalised_ms", store=store)
    assert again.entries == first.entries  # the same precision: reused, nothing measured
    int8 = LocalProfiler(protocol=QUICK, references=store, precision="int8")
    quantised = build_block_table(space, "mini", int8, statistic="normalised_ms", store=store)
    assert quantised.entries.keys() == first.entries.keys()
    assert all(s.fingerprint.get("precision") == "int8" for s in quantised.entries.values())
    assert int8.output_snr == []  # a block table's entries are latencies only
    # The INT8 profiler timed its own (INT8) reference instead of the FP32 one stored for the
    # device, and said nothing: it is this host's, only at another precision.
    assert not fp32.notices() and not int8.notices()


def test_an_int8_device_times_against_an_int8_reference_stored_apart_from_fp32s(tmp_path):
    store = FileLatencyStore(home=tmp_path)
    int8 = LocalProfiler(protocol=QUICK, references=store, precision="int8")
    assert int8.reference is not None
    stored = store.load_reference("local-cpu")
    assert stored is not None and stored.fingerprint["precision"] == "int8"
    assert stored.nominal_ms == pytest.approx(int8.reference.nominal_ms)
    # The same precision again: the stored timing is used, not timed anew.
    again = LocalProfiler(protocol=QUICK, references=store, precision="int8")
    assert again.reference is not None and again.reference.nominal_ms == stored.nominal_ms
    # An FP32 profiler of the device times the FP32 reference: a different model, so a
    # different nominal time, stored without a precision.
    fp32 = LocalProfiler(protocol=QUICK, references=store)
    assert fp32.reference is not None and fp32.reference.nominal_ms != stored.nominal_ms
    assert "precision" not in store.load_reference("local-cpu").fingerprint
    assert not int8.notices() and not again.notices() and not fp32.notices()


def test_the_int8_reference_is_a_quantised_stack_and_mini_unet_the_same_every_time():
    int8 = reference_model("int8")
    assert int8 == reference_model("int8")  # seeded weights and calibration inputs
    graph = onnx.load_from_string(int8).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The convolution stack and a U-Net without attention (its latent and time step), whose
    # float parts (normalisations, SiLU) drift as the measured U-Nets' do, in one graph.
    assert [i.name for i in graph.input] == ["stack/x", "unet/sample", "unet/timestep"]
    assert graph.input[0].type.tensor_type.shape.dim[1].dim_value == INT8_REFERENCE_CHANNELS
    assert {"InstanceNormalization", "Sigmoid"} <= ops
    # FP16 devices keep the FP32 reference.
    assert reference_model("fp16") == reference_model("fp32") == reference_model()


def test_an_int8_devices_figures_name_their_reference_and_an_older_timing_is_not_used(
        tmp_path):
    store = FileLatencyStore(home=tmp_path)
    int8 = LocalProfiler(protocol=QUICK, references=store, precision="int8")
    assert int8.host_fingerprint()["reference"] == INT8_REFERENCE
    measured = measure_components(SPEC, int8, scale="mini", components=["unet"],
                                  check_output=False)
    assert measured["unet"].fingerprint["reference"] == INT8_REFERENCE
    assert "reference" not in LocalProfiler(protocol=QUICK).host_fingerprint()
    # A timing of the earlier INT8 reference (a convolution stack, named nowhere) on this host
    # is another model's: timed again, without a notice.
    stored = store.load_reference("local-cpu")
    assert stored is not None and stored.fingerprint["reference"] == INT8_REFERENCE
    older = {k: v for k, v in stored.fingerprint.items() if k != "reference"}
    store.save_reference(replace(stored, nominal_ms=0.65, fingerprint=older))
    again = LocalProfiler(protocol=QUICK, references=store, precision="int8")
    assert again.reference is not None and again.reference.nominal_ms != 0.65
    assert store.load_reference("local-cpu").fingerprint["reference"] == INT8_REFERENCE
    assert not again.notices()


def test_devices_keep_their_precision_and_refuse_one_their_kind_lacks(tmp_path):
    registry = DeviceRegistry(home=tmp_path)
    registry.add(Device(name="npu-int8", kind="local", precision="int8"))
    device = registry.get("npu-int8")
    assert device.precision == "int8" and device.describe()["precision"] == "int8"
    assert device.profiler(home=tmp_path).precision == "int8"
    assert device.profiler(home=tmp_path, precision="fp16").precision == "fp16"
    with pytest.raises(LatencyInputError, match="fp32, fp16, int8; not 'bf16'"):
        Device(name="x", kind="local", precision="bf16")
    with pytest.raises(LatencyInputError, match="fp32, fp16, bf16; not 'int8'"):
        Device(name="t", kind="torch", torch_device="cpu", precision="int8")
    with pytest.raises(LatencyInputError, match="needs a torch device"):
        Device(name="t", kind="torch")
    with pytest.raises(LatencyInputError, match="takes no torch device"):
        Device(name="x", kind="local", torch_device="cpu")


def test_a_torch_device_times_the_module_in_pytorch(tmp_path):
    registry = DeviceRegistry(home=tmp_path)
    registry.add(Device(name="torch-cpu", kind="torch", torch_device="cpu", precision="bf16",
                        protocol=QUICK))
    profiler = registry.get("torch-cpu").profiler(home=tmp_path)
    assert isinstance(profiler, TorchProfiler) and profiler.statistic == "p10_ms"
    measured = measure_components(SPEC, profiler, scale="mini")
    for stats in measured.values():
        assert stats.n == 3 and 0 < stats.min_ms <= stats.p10_ms <= stats.p90_ms
        assert stats.fingerprint["runtime"] == f"torch {torch.__version__}"
        assert stats.fingerprint["precision"] == "bf16"
        assert stats.fingerprint["provider"] == "torch-cpu"
    with pytest.raises(LatencyInputError, match="does not run ONNX files"):
        profiler.measure_onnx(b"onnx")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")
def test_a_cuda_torch_device_is_refused_without_a_gpu_in_one_line(tmp_path):
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "device", "add", "gpu", "--kind", "torch",
         "--torch-device", "cuda", "--dtype", "fp16"],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'cuda' is not available" in lines[0]
    assert not (tmp_path / "devices" / "gpu.json").exists()


def test_device_add_and_list_show_the_precision(tmp_path):
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                              text=True, timeout=120, env=env, check=False)

    added = cli("device", "add", "cpu-int8", "--kind", "local", "--precision", "int8")
    assert added.returncode == 0 and "int8" in added.stdout, added.stderr
    bad = cli("device", "add", "cpu-int4", "--kind", "local", "--precision", "int4")
    assert bad.returncode == 2 and "not 'int4'" in bad.stderr
    wrong = cli("device", "add", "t", "--kind", "local", "--dtype", "bf16")
    assert wrong.returncode == 2 and "for --kind torch" in wrong.stderr
    listed = json.loads(cli("device", "list", "--json").stdout)
    by_name = {d["name"]: d for d in listed["devices"]}
    assert by_name["cpu-int8"]["precision"] == "int8"
    assert by_name[latency_models.LOCAL_CPU]["precision"] == "fp32"


def test_a_study_whose_device_measures_at_another_precision_is_refused(tmp_path):
    from nanosd_nas.search import StudyConfig, StudyConfigError

    DeviceRegistry(home=tmp_path).add(Device(name="cpu-int8", kind="local", precision="int8"))
    document = {"name": "s", "space": "nanosd", "scale": "mini",
                "latency": {"precision": "int8"}}
    wanted = StudyConfig.from_document(document)
    with pytest.raises(StudyConfigError, match=r"latency.precision: int8 but device "
                                               r"'local-cpu' measures at fp32"):
        wanted.check_device(home=tmp_path)
    on_int8 = StudyConfig.from_document({**document, "device": "cpu-int8"})
    assert on_int8.check_device(home=tmp_path).precision == "int8"
    assert StudyConfig.from_document({**document, "latency": {}}).latency.precision is None


def _conv_onnx(folder: Path, weight: float) -> tuple[Path, dict]:
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    torch.nn.init.constant_(conv.weight, weight)
    inputs = (torch.randn(1, 4, 8, 8),)
    path = folder / "conv.onnx"
    names = spaces.export_onnx_component(conv, inputs, path, "block")
    return path, feeds_of(path, names, inputs)


def test_a_model_the_quantiser_fails_on_is_named_in_one_line(tmp_path):
    # NaN weights: the quantiser cannot compute their scale (ONNX Runtime's own error).
    path, feeds = _conv_onnx(tmp_path, float("nan"))
    with pytest.raises(ConversionError) as caught:
        convert(path, "int8", feeds, what="the conv")
    assert str(caught.value).startswith("cannot convert the conv to int8: ")
    assert "\n" not in str(caught.value) and caught.value.__cause__ is not None
    assert isinstance(caught.value, LatencyInputError)  # the CLI's one line, exit 2
    (tmp_path / "finite").mkdir()
    fine, fine_feeds = _conv_onnx(tmp_path / "finite", 0.1)  # the same model, finite weights
    assert convert(fine, "int8", fine_feeds).exists()


#: Runs the command line with one block of every model it builds broken (NaN weights): the
#: block a user's space might hold that the quantiser cannot take.
_BROKEN_BLOCK = """
import sys, torch
from nanosd_nas.latency_models import _block_calls
real, component, path = _block_calls.build, sys.argv[1], sys.argv[2]
def build(spec):
    model = real(spec)
    root = model.unet if component == "unet" else model.vae
    with torch.no_grad():
        for parameter in root.get_submodule(path).parameters():
            parameter.fill_(float("nan"))
    return model
_block_calls.build = build
from nanosd_nas.cli import main
sys.argv = ["nanosd-nas", *sys.argv[3:]]
main()
"""


def test_calibrating_a_block_the_quantiser_fails_on_names_the_block_and_stores_nothing(
        tmp_path):
    from nanosd_nas.latency_models._features import SpaceFeatures
    from nanosd_nas.search.store import Store

    space = tmp_path / "small.yaml"
    space.write_text(SMALL_YAML)
    loaded = spaces.load_space(str(space))
    # The block calibration measures first.
    _, first = next(iter(SpaceFeatures(loaded, "mini", lambda _: 0.0).all_blocks().values()))
    database = f"sqlite:///{tmp_path / 'nas.db'}"
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path), "NANOSD_NAS_DATABASE_URL": database}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _BROKEN_BLOCK, first.component,
                               first.path, *args], capture_output=True, text=True,
                              timeout=600, env=env, check=False)

    assert cli("device", "add", "npu", "--kind", "local", "--precision", "int8", "--warmup",
               "0", "--runs", "3").returncode == 0
    failed = cli("device", "calibrate", "npu", "--space", str(space), "--initial", "4",
                 "--rounds", "0", "--held-out", "2")
    assert failed.returncode == 2, failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot convert {first.component} block {first.path} "
                           "to int8: "), line
    with Store.open(database) as store:
        assert store.measurements("npu") == [] and store.list_predictors("npu") == []
