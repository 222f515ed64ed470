"""Logging set-up shared by the entry points: levels and format, never request bodies."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    level = os.environ.get("SKINSCAN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
