"""The process-wide classifier: loaded once, shared by every request.

Serverless containers live for many requests; loading the model per request
is the classic mistake that makes each answer take seconds. A failure is not
cached: the next request tries again, so a store that was down at cold start
does not leave the container broken for its whole life.
"""

from __future__ import annotations

import logging
import threading

from .classifier import Classifier
from .manifest import ManifestError
from .store import ModelUnavailable, model_uri, resolve

log = logging.getLogger("skinscan")

_lock = threading.Lock()
_classifier: Classifier | None = None


def load_classifier(uri: str | None = None) -> Classifier:
    """Fetch, verify and load one model (default: ``SKINSCAN_MODEL_URI`` or the shipped one).

    Every failure is a :class:`ModelUnavailable`; nothing is cached here.
    """
    uri = uri or model_uri()
    try:
        resolved = resolve(uri)
        classifier = Classifier.load(resolved.path, resolved.manifest)
    except ModelUnavailable:
        raise
    except ManifestError as error:
        raise ModelUnavailable(str(error)) from None
    except Exception as error:  # a broken file must never take the process down
        log.exception("model load failed")
        raise ModelUnavailable(f"the model could not be loaded: {type(error).__name__}") from None
    log.info("model %s loaded from %s (%s)", classifier.manifest["version"], resolved.source,
             classifier.model_info.backend)
    return classifier


def get_classifier() -> Classifier:
    """The process-wide classifier for the configured model, loaded on first use."""
    global _classifier
    if _classifier is not None:
        return _classifier
    with _lock:
        if _classifier is None:
            _classifier = load_classifier()
    return _classifier


def install(classifier: Classifier) -> None:
    """Serve this classifier process-wide (the command line's ``--model``, tests' fake backend)."""
    global _classifier
    with _lock:
        _classifier = classifier


def reset() -> None:
    """Forget the loaded model (tests, or a deliberate reload)."""
    global _classifier
    with _lock:
        _classifier = None
