"""The library's ``mvq_plugin`` log records, shown in an mmengine run's own log."""
from __future__ import annotations

import logging

from mmengine.logging import MMLogger

__all__ = ['route_logs_to_mmengine']


def _run_logger() -> MMLogger | None:
    """The current ``MMLogger`` if a runner made it (it writes a log file), else ``None``."""
    if not MMLogger._instance_dict:
        return None
    current = MMLogger.get_current_instance()
    return current if any(isinstance(h, logging.FileHandler) for h in current.handlers) else None


class _ToMMLogger(logging.Handler):
    """Re-emits each record through a runner's ``MMLogger`` (console and ``*.log`` file);
    outside a run (command-line tools) records take Python's usual route."""

    def emit(self, record: logging.LogRecord) -> None:
        run_logger = _run_logger()
        if run_logger is None:
            logging.getLogger().handle(record)
            return
        try:
            run_logger.log(record.levelno, record.getMessage())
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
