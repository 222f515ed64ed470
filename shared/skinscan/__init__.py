"""skinscan: a skin-photo classifier that suggests, never diagnoses.

The small public API every adapter uses::

    from skinscan import configure_process, get_classifier
    configure_process()                     # once, at process start
    result = get_classifier().classify_bytes(photo_bytes)   # a skinscan.contract.Result

Importing it loads nothing but :mod:`skinscan.contract` (standard library) and changes no process
state: the names below load numpy and Pillow on first use. That is what lets the function client
(``skinscan_client``) share the contract without the serving core's dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .contract import DISCLAIMER

if TYPE_CHECKING:
    from .imaging import ImageError, configure_process
    from .labels import LABELS
    from .service import get_classifier
    from .store import ModelUnavailable

__all__ = ["DISCLAIMER", "LABELS", "ImageError", "ModelUnavailable", "configure_process", "get_classifier"]
__version__ = "0.1.0"

_LAZY = {"ImageError": "imaging", "configure_process": "imaging", "LABELS": "labels",
         "get_classifier": "service", "ModelUnavailable": "store"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
