"""The full-size student built on the meta device has exactly the released checkpoint's state-dict layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metricanything.models.student import Student, student_config

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_student"
MANIFEST = FIXTURE / "full_manifest.json"


def _meta_student(name: str = "official") -> Student:
    with torch.device("meta"):
        return Student(student_config(name))


def test_param_count_without_fixture() -> None:
    m = _meta_student()
    assert sum(p.numel() for p in m.parameters()) == 876_664_001
    assert sum(b.numel() for b in m.buffers()) == 122_896
    assert len(m.state_dict()) == 668
    assert _meta_student("vith16plus").cfg == m.cfg


@pytest.mark.skipif(not MANIFEST.is_file(), reason=f"manifest not found at {MANIFEST} (shared folder absent)")
def test_state_dict_equals_manifest() -> None:
    man = json.loads(MANIFEST.read_text())
    m = _meta_student()
    params = dict(m.named_parameters())
    buffers = dict(m.named_buffers())
    sd = m.state_dict()
    ours = [
        [k, list(v.shape), str(v.dtype).removeprefix("torch."), "parameter" if k in params else "buffer"]
        for k, v in sd.items()
    ]
    assert [k[0] for k in ours] == [k[0] for k in man["keys"]]  # same names, same order
    assert ours == man["keys"]  # shapes, dtypes and kinds
    assert len(sd) == man["n_keys"]
    assert sum(p.numel() for p in params.values()) == man["n_params"] == 876_664_001
    assert sum(b.numel() for b in buffers.values()) == man["n_buffer_elements"]
    for prefix, count in man["params_by_prefix"].items():
        assert sum(v.numel() for k, v in params.items() if k.startswith(prefix + ".")) == count, prefix
