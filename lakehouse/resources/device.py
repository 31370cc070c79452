"""Where tensor work runs: CUDA when present (or asked for), the CPU otherwise."""

from __future__ import annotations

import dagster as dg
import torch

from lakehouse.resources.errors import SettingError

DEVICE_VAR = "LAKEHOUSE_DEVICE"


class DeviceResource(dg.ConfigurableResource):
    """`prefer`: auto (CUDA if available), cuda, or cpu; `batch_size` for inference (0:
    the device's own, `models.classifier.inference_batch_size`)."""

    prefer: str = "auto"
    batch_size: int = 0

    def device(self) -> torch.device:
        if self.prefer == "cpu":
            return torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda")
        if self.prefer == "cuda":
            raise SettingError(f"{DEVICE_VAR}='cuda': no CUDA device is visible")
        return torch.device("cpu")

    def mixed_precision(self) -> bool:
        """Autocast to half precision on CUDA only: the CPU path stays exact float32."""
        return self.device().type == "cuda"
