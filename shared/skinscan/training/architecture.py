"""The seed paper's network: DenseNet121 -> GlobalAveragePooling -> Dropout -> Dense(9).

Built with ``weights=None``: nothing is downloaded; the weights come from our
own training (or from a local file the user supplies with ``--weights``).
"""

from __future__ import annotations

from ..backends import FEATURES_LAYER  # the serving core owns the layer name (and with_features)
from ..labels import LABELS

SEED_PARAMETER_COUNT = 7_046_729


def build_densenet121(image_size: int, dropout: float = 0.3, backbone_weights: str | None = None):
    import keras

    backbone = keras.applications.DenseNet121(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    if backbone_weights:
        backbone.load_weights(backbone_weights)
    return _classifier_head(backbone.input, backbone.output, dropout, "densenet121")


def build_mobilenet(image_size: int, dropout: float = 0.3, backbone_weights: str | None = None):
    """The seed's MobileNet comparison, from scratch like everything here."""
    import keras

    backbone = keras.applications.MobileNet(include_top=False, weights=None,
                                            input_shape=(image_size, image_size, 3))
    if backbone_weights:
        backbone.load_weights(backbone_weights)
    return _classifier_head(backbone.input, backbone.output, dropout, "mobilenet")


def build_cnn(image_size: int, dropout: float = 0.3, backbone_weights: str | None = None):
    """The seed's plain CNN baseline: four conv blocks."""
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for filters in (32, 64, 128, 256):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    return _classifier_head(inputs, x, dropout, "cnn")


def _classifier_head(inputs, backbone_output, dropout: float, name: str):
    import keras

    features = keras.layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(backbone_output)
    dropped = keras.layers.Dropout(dropout, name="dropout")(features)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")(dropped)
    return keras.Model(inputs, outputs, name=f"skinscan_{name}")


ARCHITECTURES = {"densenet121": build_densenet121, "mobilenet": build_mobilenet, "cnn": build_cnn}


def with_input_size(model, image_size: int):
    """The same trained network at another input size.

    Every layer before the global pooling is convolutional, so the weights fit
    any input size; only the stored input shape changes. Used to serve at a
    larger size than training saw, when validation says it helps.
    """
    dropout = model.get_layer("dropout").rate
    resized = ARCHITECTURES[_architecture_of(model)](image_size, dropout)
    resized.set_weights(model.get_weights())
    return resized


def _architecture_of(model) -> str:
    return model.name.removeprefix("skinscan_")
