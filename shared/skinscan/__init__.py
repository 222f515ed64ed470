"""skinscan: a skin-photo classifier that suggests, never diagnoses.

The small public API every adapter uses::

    from skinscan import get_classifier
    result = get_classifier().classify_bytes(photo_bytes)
"""

from .imaging import ImageError
from .labels import LABELS
from .service import get_classifier
from .store import ModelUnavailable
from .triage import DISCLAIMER

__all__ = ["DISCLAIMER", "LABELS", "ImageError", "ModelUnavailable", "get_classifier"]
__version__ = "0.1.0"
