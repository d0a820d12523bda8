"""lmtie.device: the device choice and the machine set up for training."""

import pytest
import torch

from lmtie import device


def test_device_choice():
    assert device.resolve_device("cpu") == torch.device("cpu")
    assert device.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device.prepare_device("cpu") == torch.device("cpu")  # mallopt: a no-op otherwise
    with pytest.raises(ValueError, match="cpu"):
        device.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            device.resolve_device("cuda")
