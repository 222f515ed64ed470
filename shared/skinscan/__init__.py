"""skinscan: a skin-photo classifier that suggests, never diagnoses.

The small public API every adapter uses::

    from skinscan import configure_process, get_classifier
    configure_process()                     # once, at process start
    result = get_classifier().classify_bytes(photo_bytes)

Importing it loads only numpy and Pillow and changes no process state.
"""

from .imaging import ImageError, configure_process
from .labels import LABELS
from .service import get_classifier
from .store import ModelUnavailable
from .triage import DISCLAIMER

__all__ = ["DISCLAIMER", "LABELS", "ImageError", "ModelUnavailable", "configure_process", "get_classifier"]
__version__ = "0.1.0"
