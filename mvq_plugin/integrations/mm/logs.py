"""The library's ``mvq_plugin`` log records, shown in an mmengine run's own log."""
from __future__ import annotations

import logging

from mmengine.logging import MMLogger

__all__ = ['route_logs_to_mmengine']


class _ToMMLogger(logging.Handler):
    """Re-emits each record through the current ``MMLogger`` (console and ``*.log`` file)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            MMLogger.get_current_instance().log(record.levelno, record.getMessage())
        except Exception:  # logging must never break a run
            self.handleError(record)


def route_logs_to_mmengine() -> None:
    """Sends ``logging.getLogger('mvq_plugin')`` to mmengine's logger (idempotent).

    The plan table, the skipped Pretrained initialisation and the artifact warnings are
    library records; without this they would go to Python's root logger, which an mmengine
    run does not show. A level set on the ``mvq_plugin`` logger beforehand is kept; otherwise
    INFO records pass.
    """
    logger = logging.getLogger('mvq_plugin')
    if any(isinstance(h, _ToMMLogger) for h in logger.handlers):
        return
    logger.addHandler(_ToMMLogger())
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
