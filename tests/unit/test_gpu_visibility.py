"""How the workflow tells whether this machine shows a GPU (without importing PyTorch)."""

from __future__ import annotations

import pytest

from brainalign.workflow import gpu_device_visible


@pytest.mark.parametrize(
    ("device_nodes", "cuda_visible_devices", "expected"),
    [
        ([], None, False),
        (["nvidia0", "nvidiactl"], None, True),
        (["nvidia3"], "0,1", True),
        (["kfd"], None, True),
        (["nvidiactl", "nvidia-uvm"], None, False),  # driver nodes without a device
        (["nvidia0"], "", False),
        (["nvidia0"], "-1", False),
    ],
)
def test_gpu_device_visible_reads_device_nodes_and_cuda_visible_devices(
    tmp_path, monkeypatch, device_nodes, cuda_visible_devices, expected
):
    for node in device_nodes:
        (tmp_path / node).touch()
    if cuda_visible_devices is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda_visible_devices)
    assert gpu_device_visible(tmp_path) is expected
