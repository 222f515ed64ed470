"""PyTorch DenseNet121 <-> the seed's Keras DenseNet121 ``.h5``, weight for weight.

Keras stays the format the function serves; PyTorch is only faster to train here. The two
networks have the same 242 weighted layers (convolutions, batch norms, the dense head) in the same
order, so the copy is positional, with each tensor's layout converted:

* convolution kernels: torch ``(out, in, h, w)`` -> Keras ``(h, w, in, out)``;
* batch norm: ``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance`` (Keras' epsilon is 1.001e-5, torch's 1e-5: the outputs differ by ~1e-7);
* the dense layer: transposed.

:func:`verify_export` checks the result on real photos; the ``.h5`` is written only when it passes.

The EfficientNet-Lite teacher gets a Keras twin too (:func:`teacher_to_keras`), built block by block
from the PyTorch network, so the function can serve it beside the DenseNet121 (issue 18, item 4):
serving runs Keras/LiteRT and never PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .torch_networks import SeedDenseNet, student

# The exported model must answer like the network that was trained (issue 18: <= 1e-4).
EXPORT_TOLERANCE = 1e-4


def _torch_layers(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]


def _keras_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if layer.get_weights()]


def _check_pairing(torch_layers: list[nn.Module], keras_layers: list[Any]) -> None:
    if len(torch_layers) != len(keras_layers):
        raise ValueError(f"{len(torch_layers)} weighted torch layers but {len(keras_layers)} Keras layers")
    kinds = {nn.Conv2d: "Conv2D", nn.BatchNorm2d: "BatchNormalization", nn.Linear: "Dense"}
    for index, (ours, theirs) in enumerate(zip(torch_layers, keras_layers, strict=True)):
        if type(theirs).__name__ != kinds[type(ours)]:
            raise ValueError(f"layer {index}: torch {type(ours).__name__} meets Keras {type(theirs).__name__}")


def torch_to_keras(network: SeedDenseNet, image_size: int) -> Any:
    """A float32 Keras model of the seed's architecture holding ``network``'s weights."""
    from .architecture import build_densenet121

    model = build_densenet121(image_size, dropout=float(network.dropout.p))
    pairs = list(zip(_torch_layers(network), _keras_layers(model), strict=False))
    _check_pairing(_torch_layers(network), _keras_layers(model))
    for ours, theirs in pairs:
        theirs.set_weights(_to_keras(ours))
    return model


def keras_to_torch(model: Any) -> SeedDenseNet:
    """The exporter run backwards: a trained skinscan ``.h5`` as a PyTorch network (warm starts)."""
    dropout = float(model.get_layer("dropout").rate)
    network = student(dropout)
    _check_pairing(_torch_layers(network), _keras_layers(model))
    with torch.no_grad():
        for ours, theirs in zip(_torch_layers(network), _keras_layers(model), strict=True):
            _from_keras(ours, [np.asarray(w) for w in theirs.get_weights()])
    return network


def _to_keras(layer: nn.Module) -> list[np.ndarray]:
    if isinstance(layer, nn.Conv2d):
        return [layer.weight.detach().float().permute(2, 3, 1, 0).cpu().numpy()]
    if isinstance(layer, nn.BatchNorm2d):
        assert layer.running_mean is not None and layer.running_var is not None
        return [t.detach().float().cpu().numpy() for t in
                (layer.weight, layer.bias, layer.running_mean, layer.running_var)]
    assert isinstance(layer, nn.Linear)
    return [layer.weight.detach().float().t().cpu().numpy(), layer.bias.detach().float().cpu().numpy()]


def _from_keras(layer: nn.Module, weights: list[np.ndarray]) -> None:
    if isinstance(layer, nn.Conv2d):
        layer.weight.copy_(torch.from_numpy(weights[0]).permute(3, 2, 0, 1))
    elif isinstance(layer, nn.BatchNorm2d):
        assert layer.running_mean is not None and layer.running_var is not None
        for tensor, value in zip((layer.weight, layer.bias, layer.running_mean, layer.running_var), weights,
                                 strict=True):
            tensor.copy_(torch.from_numpy(value))
    else:
        assert isinstance(layer, nn.Linear)
        layer.weight.copy_(torch.from_numpy(weights[0]).t())
        layer.bias.copy_(torch.from_numpy(weights[1]))


def torch_probabilities(network: nn.Module, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Softmax outputs in float32, eval mode, for NHWC model inputs (as Keras takes them)."""
    network.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])).permute(0, 3, 1, 2)
            outputs.append(torch.softmax(network(x.float()), dim=1).numpy())
    return np.concatenate(outputs)


@dataclass(frozen=True)
class ExportCheck:
    photos: int
    max_abs_difference: float
    same_top1: float

    @property
    def passed(self) -> bool:
        return self.max_abs_difference <= EXPORT_TOLERANCE


def verify_export(network: nn.Module, model: Any, inputs: np.ndarray) -> ExportCheck:
    """Compare the Keras model with the PyTorch network on the same model inputs."""
    ours = torch_probabilities(network, inputs)
    theirs = np.asarray(model.predict(inputs, batch_size=32, verbose=0))
    return ExportCheck(len(inputs), float(np.abs(ours - theirs).max()),
                       float(np.mean(ours.argmax(1) == theirs.argmax(1))))


def export_h5(network: nn.Module, image_size: int, out: Path, check_inputs: np.ndarray) -> ExportCheck:
    """Write the ``.h5`` only if it answers like ``network`` (student or teacher) on ``check_inputs``."""
    model = (torch_to_keras(network, image_size) if isinstance(network, SeedDenseNet)
             else teacher_to_keras(network, image_size))
    check = verify_export(network, model, check_inputs)
    if not check.passed:
        raise RuntimeError(f"export differs from the trained network by {check.max_abs_difference:.2e} "
                           f"(> {EXPORT_TOLERANCE:.0e}); nothing written")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    model.save(out, include_optimizer=False)
    return check


# ------------------------------------------------------------------ the teacher's Keras twin

def teacher_to_keras(network: nn.Module, image_size: int) -> Any:
    """A float32 Keras model that answers like an EfficientNet-Lite teacher (timm's ``tf_efficientnet_lite*``).

    Lite networks are plain: ReLU6, no squeeze-and-excitation, TensorFlow's "same" padding (which
    Keras' ``padding="same"`` is) and BatchNorm epsilon 1e-3. Each torch layer is mirrored and
    copied as it is met, so the two cannot drift apart in order; anything unexpected (an SE block,
    another activation) raises instead of exporting a different network.
    """
    import keras

    layers = keras.layers
    network = network.eval()

    def conv(x: Any, layer: nn.Conv2d, name: str) -> Any:
        if layer.groups > 1:
            if layer.groups != layer.in_channels or layer.bias is not None:
                raise ValueError(f"{name}: only bias-free depthwise convolutions are mirrored")
            keras_layer = layers.DepthwiseConv2D(layer.kernel_size, layer.stride, padding="same", use_bias=False,
                                                 name=name)
            y = keras_layer(x)
            # torch's (channels, 1, h, w) -> Keras' depthwise (h, w, channels, 1)
            keras_layer.set_weights([layer.weight.detach().float().permute(2, 3, 0, 1).cpu().numpy()])
            return y
        if layer.bias is not None:
            raise ValueError(f"{name}: a convolution with a bias is not part of a Lite network")
        keras_layer = layers.Conv2D(layer.out_channels, layer.kernel_size, layer.stride, padding="same",
                                    use_bias=False, name=name)
        y = keras_layer(x)
        keras_layer.set_weights(_to_keras(layer))
        return y

    def norm(x: Any, layer: nn.Module, name: str) -> Any:
        keras_layer = layers.BatchNormalization(epsilon=float(layer.eps), name=name)
        y = keras_layer(x)
        keras_layer.set_weights(_to_keras(layer))
        activation = getattr(layer, "act", nn.Identity())
        if isinstance(activation, nn.ReLU6):
            return layers.ReLU(max_value=6.0, name=f"{name}_relu6")(y)
        if not isinstance(activation, nn.Identity):
            raise ValueError(f"{name}: activation {type(activation).__name__} is not part of a Lite network")
        return y

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = norm(conv(inputs, network.conv_stem, "stem_conv"), network.bn1, "stem_bn")
    for s, stage in enumerate(network.blocks):
        for b, block in enumerate(stage):
            name = f"block{s}_{b}"
            if not isinstance(getattr(block, "se", nn.Identity()), nn.Identity):
                raise ValueError(f"{name}: squeeze-and-excitation is not part of a Lite network")
            shortcut = x
            if hasattr(block, "conv_pwl"):  # inverted residual: expand, depthwise, project
                x = norm(conv(x, block.conv_pw, f"{name}_expand"), block.bn1, f"{name}_expand_bn")
                x = norm(conv(x, block.conv_dw, f"{name}_dw"), block.bn2, f"{name}_dw_bn")
                x = norm(conv(x, block.conv_pwl, f"{name}_project"), block.bn3, f"{name}_project_bn")
            else:  # depthwise separable: depthwise, project
                x = norm(conv(x, block.conv_dw, f"{name}_dw"), block.bn1, f"{name}_dw_bn")
                x = norm(conv(x, block.conv_pw, f"{name}_project"), block.bn2, f"{name}_project_bn")
            if block.has_skip:
                x = layers.Add(name=f"{name}_add")([shortcut, x])
    x = norm(conv(x, network.conv_head, "head_conv"), network.bn2, "head_bn")
    x = layers.GlobalAveragePooling2D(name="features")(x)
    x = layers.Dropout(float(network.drop_rate), name="dropout")(x)
    head = layers.Dense(network.classifier.out_features, activation="softmax", name="predictions")
    outputs = head(x)
    head.set_weights(_to_keras(network.classifier))
    return keras.Model(inputs, outputs, name="efficientnet_lite_teacher")
