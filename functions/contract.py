"""The function's OpenAPI document: ``functions/openapi.yaml`` is the one source, served as JSON.

The YAML travels as package data of :mod:`functions` and is converted once per process, on the
first ``GET /openapi.json`` (no model is needed to answer it).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import yaml

DOCUMENT = "openapi.yaml"
PATH = "/openapi.json"


@functools.cache
def _document_json() -> str:
    text = resources.files("functions").joinpath(DOCUMENT).read_text(encoding="utf-8")
    return json.dumps(yaml.safe_load(text))


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document as a fresh dict (callers may change it)."""
    return json.loads(_document_json())


def is_document_path(path: str) -> bool:
    """``/openapi.json``, also under a prefix (``/api/classify/openapi.json`` behind a proxy)."""
    return path.rstrip("/").endswith(PATH)
