"""The full-size Student-PointMap built on the meta device has exactly the released state-dict layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metricanything.models.pointmap import PointMapConfig, PointMapModel, pointmap_config

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_pointmap"
MANIFEST = FIXTURE / "full_manifest.json"


def _meta_model(cfg: PointMapConfig | None = None) -> PointMapModel:
    with torch.device("meta"):
        return PointMapModel(cfg)


def test_param_count_without_fixture() -> None:
    m = _meta_model()
    assert sum(p.numel() for p in m.parameters()) == 326_209_221
    assert sum(b.numel() for b in m.buffers()) == 6
    assert len(m.state_dict()) == 483
    assert pointmap_config("official") == pointmap_config("vitl14") == m.cfg
    assert all(t.is_meta for t in m.state_dict().values())  # nothing was allocated


@pytest.mark.skipif(not MANIFEST.is_file(), reason=f"manifest not found at {MANIFEST} (shared folder absent)")
def test_state_dict_equals_manifest() -> None:
    man = json.loads(MANIFEST.read_text())
    m = _meta_model(PointMapConfig.from_dict(man["model_config"]))  # the reconstructed released model_config
    assert m.cfg == PointMapConfig()
    params = dict(m.named_parameters())
    sd = m.state_dict()
    ours = [
        {"key": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch."),
         "kind": "parameter" if k in params else "buffer", "numel": v.numel()}
        for k, v in sd.items()
    ]
    assert [k["key"] for k in ours] == [k["key"] for k in man["keys"]]  # same names, same order
    assert ours == man["keys"]  # shapes, dtypes, kinds, sizes
    assert len(sd) == man["num_state_dict_keys"] == 483
    assert len(params) == man["num_parameter_tensors"]
    assert sum(p.numel() for p in params.values()) == man["total_parameters"] == 326_209_221
    assert sum(b.numel() for b in m.buffers()) == man["total_buffer_elements"]
    for prefix, count in man["per_second_level_prefix_encoder"].items():
        assert sum(v.numel() for k, v in params.items() if k.startswith(prefix)) == count["parameters"], prefix
    vit = m.cfg.encoder.vit_config()
    facts = man["architecture_facts"]
    assert (vit.embed_dim, vit.depth, vit.num_heads, vit.patch_size, vit.grid_size, vit.norm_eps) == (
        facts["vit_embed_dim"], facts["vit_depth"], facts["vit_num_heads"], facts["vit_patch_size"],
        facts["vit_pos_embed_grid"], facts["vit_layernorm_eps"],
    )
    assert vit.pos_embed_interp_offset == facts["vit_interpolate_offset"]
    assert vit.num_register_tokens == facts["vit_num_register_tokens"]
