from unittest import mock

import pytest

from ms_gpt.environment import device
from ms_gpt.environment.device import DeviceError


@pytest.mark.parametrize("name,want", [("ascend", "Ascend"), ("NPU", "Ascend"), ("gpu", "GPU"),
                                       ("cuda", "GPU"), ("Cpu", "CPU")])
def test_normalize_target(name, want):
    assert device.normalize_target(name) == want


def test_unknown_target_names_value_and_accepted():
    with pytest.raises(DeviceError, match=r"unknown device 'tpu'; accepted: Ascend \(or npu\), GPU \(or cuda\), CPU"):
        device.normalize_target("tpu")


def test_resolution_order():
    avail = ["GPU", "CPU"]
    assert device.resolve_target("cpu", env={"MS_GPT_DEVICE": "gpu"}, available=avail) == ("CPU", "argument")
    assert device.resolve_target(None, env={"MS_GPT_DEVICE": "gpu"}, available=avail) == ("GPU", "MS_GPT_DEVICE")
    assert device.resolve_target(None, env={}, available=avail) == ("GPU", "auto")
    assert device.resolve_target("auto", env={}, available=["Ascend", "GPU", "CPU"]) == ("Ascend", "auto")
    assert device.resolve_target(None, env={"MS_GPT_DEVICE": "auto"}, available=["CPU"]) == ("CPU", "auto")


def test_unavailable_ascend_says_what_is_available_and_what_to_check():
    with pytest.raises(DeviceError) as exc:
        device.resolve_target("Ascend", env={}, available=["CPU"])
    msg = str(exc.value)
    assert "'Ascend' was requested via --device but is not available" in msg
    assert "available: CPU" in msg
    assert "set_env.sh" in msg and "npu-smi" in msg


def test_unavailable_gpu_from_env_names_cuda_versions():
    with pytest.raises(DeviceError) as exc:
        device.resolve_target(None, env={"MS_GPT_DEVICE": "gpu"}, available=["CPU"])
    msg = str(exc.value)
    assert "via $MS_GPT_DEVICE" in msg and "CUDA 11.1 and 11.6" in msg and "cuDNN 8" in msg


def test_static_shape_policy():
    assert device.static_shapes_policy("Ascend", env={}) is True
    assert device.static_shapes_policy("CPU", env={}) is False
    assert device.static_shapes_policy("CPU", force=True, env={}) is True
    assert device.static_shapes_policy("Ascend", force=False, env={}) is False
    assert device.static_shapes_policy("CPU", env={"MS_GPT_STATIC_SHAPES": "1"}) is True
    assert device.static_shapes_policy("Ascend", env={"MS_GPT_STATIC_SHAPES": "off"}) is False
    with pytest.raises(DeviceError, match=r"MS_GPT_STATIC_SHAPES='maybe' is not understood"):
        device.static_shapes_policy("CPU", env={"MS_GPT_STATIC_SHAPES": "maybe"})


def test_real_machine_has_cpu_last():
    targets = device.available_targets()
    assert targets[-1] == "CPU"


def test_setup_on_cpu_sets_context_and_seeds(monkeypatch):
    import mindspore
    import numpy as np

    monkeypatch.delenv("MS_GPT_DEVICE", raising=False)
    monkeypatch.setenv("MS_GPT_STATIC_SHAPES", "1")
    s = device.setup("CPU", mode="pynative", seed=123)
    assert (s.target, s.mode, s.static_shapes, s.seed, s.source) == ("CPU", "pynative", True, 123, "argument")
    assert not s.compiled and device.setup("CPU", seed=123).compiled  # jit: the default
    assert mindspore.get_context("mode") == mindspore.PYNATIVE_MODE
    a = np.random.rand(3)
    r1 = mindspore.ops.uniform((4,), mindspore.Tensor(0.0), mindspore.Tensor(1.0)).asnumpy()
    device.setup("CPU", mode="graph", seed=123)
    assert mindspore.get_context("mode") == mindspore.GRAPH_MODE
    np.testing.assert_array_equal(a, np.random.rand(3))
    device.setup("CPU", mode="pynative", seed=123)
    r2 = mindspore.ops.uniform((4,), mindspore.Tensor(0.0), mindspore.Tensor(1.0)).asnumpy()
    np.testing.assert_array_equal(r1, r2)


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "eager"}, r"unknown execution mode 'eager'; accepted: jit, pynative, graph"),
    ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
])
def test_setup_bad_arguments(kwargs, match):
    with pytest.raises(DeviceError, match=match):
        device.setup("CPU", **kwargs)


def test_setup_after_runtime_start_keeps_same_device_and_refuses_another():
    import mindspore

    (mindspore.Tensor([1.0]) + 1).asnumpy()  # the runtime is running on CPU now
    assert device.setup("CPU", mode="pynative", seed=0).target == "CPU"
    # Pretend GPU is available so that only the running runtime can refuse it.
    with mock.patch.object(device, "resolve_target", return_value=("GPU", "argument")):
        with pytest.raises(DeviceError, match=r"MindSpore already runs on CPU in this process, so 'GPU' cannot be selected"):
            device.setup("GPU")
