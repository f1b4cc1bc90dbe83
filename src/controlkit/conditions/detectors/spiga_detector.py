"""SPIGA, the walkthrough's landmark model, as a face-landmarks detector on any device.

SPIGA needs face boxes (dlib's HOG detector gives them here) and its weights as a local file
(``spiga_300wpublic.pt`` and friends, from the SPIGA repository). Upstream's ``SPIGAFramework`` moves
the model to CUDA unconditionally, so this adapter builds the network from the package's own parts
on the device it is given and runs the same pre- and post-processing: a square crop 1.6x the face box,
256 px, BGR in [0, 1]; landmarks come back normalised to the crop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from controlkit.conditions.detectors.dlib_detector import DlibLandmarks
from controlkit.errors import UserError

SPIGA_MODELS = ("300wpublic", "300wprivate", "merlrav", "cofw68", "wflw")
DEFAULT_MODEL = "300wpublic"  # the walkthrough's

WFLW98_TO_IBUG68 = np.array(
    list(range(0, 33, 2))  # jaw: every other point of the 33-point WFLW contour
    + [33, 34, 35, 36, 37, 42, 43, 44, 45, 46]  # upper edges of the brows
    + [51, 52, 53, 54, 55, 56, 57, 58, 59]  # nose
    + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]  # 6 of each eye's 8 points
    + list(range(76, 96))  # mouth: the same 20 points
)
"""Index into WFLW's 98 points for each iBUG-68 point (WFLW 96 and 97, the pupils, have no iBUG match)."""


def boxes_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(left, top, right, bottom) boxes, as dlib gives them, to SPIGA's (x, y, width, height)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def to_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """SPIGA's output (faces, 68 | 98, 2) in the iBUG-68 layout: 300-W style models already are."""
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.shape[1] == 68:
        return landmarks
    if landmarks.shape[1] == 98:
        return landmarks[:, WFLW98_TO_IBUG68]
    raise ValueError(f"no iBUG-68 mapping for {landmarks.shape[1]} landmarks")


def model_name(weights: Path) -> str:
    """Which SPIGA model a weights file holds, from upstream's ``spiga_<dataset>.pt`` naming."""
    stem = weights.stem.lower().removeprefix("spiga_")
    return stem if stem in SPIGA_MODELS else DEFAULT_MODEL


def _spiga_parts() -> dict[str, Any]:
    try:
        from spiga.data.loaders.transforms import AddModel3D
        from spiga.inference.config import ModelConfig
        from spiga.inference.pretreatment import get_transformers
        from spiga.models.spiga import SPIGA
    except ImportError as exc:
        raise UserError(
            f"the spiga detector needs SPIGA (pip install spiga): pip install 'controlkit[spiga]' ({exc})"
        ) from exc
    return {
        "AddModel3D": AddModel3D,
        "ModelConfig": ModelConfig,
        "transforms": get_transformers,
        "SPIGA": SPIGA,
    }


def _load_state_dict(path: Path) -> dict[str, Any]:
    """Weights as tensors only: safetensors, or torch's restricted loader (no code runs from the pickle)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


class SpigaLandmarks:
    """Callable detector: PIL image -> (faces, 68, 2) float32 pixel landmarks from SPIGA, or None."""

    name = "spiga"

    def __init__(
        self,
        weights: str | Path | None,
        upsample: int | None = None,
        device: str | None = None,
        model: str | None = None,
    ) -> None:
        if not weights:
            raise UserError(
                "the spiga detector needs its weights: pass spiga_weights=PATH to spiga_300wpublic.pt "
                "(from the SPIGA repository)"
            )
        self.weights = Path(weights).expanduser()
        if not self.weights.is_file():
            raise UserError(f"SPIGA weights not found: {self.weights}")
        self.model = model or model_name(self.weights)
        if self.model not in SPIGA_MODELS:
            raise UserError(f"unknown SPIGA model {self.model!r}; choose one of {', '.join(SPIGA_MODELS)}")
        self.device = device
        self.face_boxes = DlibLandmarks(upsample=upsample)
        self._loaded: dict[str, Any] | None = None

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"spiga {version('spiga')} {self.weights.name} on dlib HOG boxes"
        except PackageNotFoundError:
            return f"spiga {self.weights.name} on dlib HOG boxes"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": None}  # workers reload the network on their own device

    def _load(self) -> dict[str, Any]:
        if self._loaded is None:
            import torch

            parts = _spiga_parts()
            device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
            config = parts["ModelConfig"](self.model)
            network = parts["SPIGA"](
                num_landmarks=config.dataset.num_landmarks, num_edges=config.dataset.num_edges
            )
            network.load_state_dict(_load_state_dict(self.weights))
            network.to(device).eval()
            extras = parts["AddModel3D"](
                config.dataset.ldm_ids,
                ftmap_size=config.ftmap_size,
                focal_ratio=config.focal_ratio,
                totensor=True,
            )()
            self._loaded = {
                "network": network,
                "device": device,
                "crop": parts["transforms"](config),
                "crop_size": np.asarray(config.image_size, np.float32),
                "model3d": extras["model3d"].to(device),
                "cam_matrix": extras["cam_matrix"].to(device),
            }
        return self._loaded

    def __call__(self, image: Image.Image) -> np.ndarray | None:
        boxes = boxes_to_xywh(self.face_boxes.boxes(image))
        if len(boxes) == 0:
            return None
        return self.landmarks(image, boxes)

    def landmarks(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """Landmarks for the given (x, y, w, h) face boxes, in the image's pixels, iBUG-68 order."""
        import torch

        loaded = self._load()
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
        crops, crop_boxes = [], []
        for box in boxes:
            sample = loaded["crop"]({"image": bgr.copy(), "bbox": box.astype(np.float64)})
            crops.append(sample["image"])
            crop_boxes.append(sample["bbox"])
        n = len(crops)
        batch = torch.as_tensor(np.stack(crops), dtype=torch.float32, device=loaded["device"])
        inputs = [batch, loaded["model3d"].expand(n, -1, -1), loaded["cam_matrix"].expand(n, -1, -1)]
        with torch.no_grad():
            outputs = loaded["network"](inputs)
        normalised = outputs["Landmarks"][-1].float().cpu().numpy()  # (n, K, 2) in [0, 1] of the crop
        crop_boxes = np.asarray(crop_boxes, np.float32)[:, None]
        in_box = (normalised * loaded["crop_size"] - crop_boxes[..., :2]) / crop_boxes[..., 2:]
        pixels = in_box * boxes[:, None, 2:] + boxes[:, None, :2]
        return to_ibug68(pixels)
