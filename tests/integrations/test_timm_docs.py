"""docs/timm.md lists the current signature of every public timm-side call: a signature
changed in the code and not in the document fails here."""
import inspect
import re
from pathlib import Path

import pytest

pytest.importorskip('timm')

from mvq_plugin.integrations import timm as mvq_timm  # noqa: E402
from mvq_plugin.integrations import timm_data, timm_train  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'timm.md'
CALLS = [(mvq_timm, name) for name in mvq_timm.__all__] + [
    (timm_train, 'train'), (timm_train, 'evaluate'), (timm_data, 'build_datasets'),
    (timm_data, 'make_loaders')]


def signature_line(module, name: str) -> str:
    """``module.name(params) -> ret`` as docs/timm.md writes it (annotations unquoted)."""
    sig = str(inspect.signature(getattr(module, name)))
    sig = re.sub(r"'([^']*)'", r'\1', sig)                   # string annotations
    sig = re.sub(r'<function (\w+) at 0x[0-9a-f]+>', r'\1', sig)
    return f'{module.__name__.rsplit(".", 1)[-1]}.{name}{sig}'


def test_docs_list_every_current_signature():
    text = DOC.read_text()
    missing = [signature_line(m, n) for m, n in CALLS
               if callable(getattr(m, n)) and not inspect.isclass(getattr(m, n))
               and signature_line(m, n) not in text]
    assert missing == [], 'docs/timm.md, "Signatures", lacks:\n' + '\n'.join(missing)
