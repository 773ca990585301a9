"""Inference cost on a 640 x 480 image: the official-architecture student with the FlexiViT-resampled ViT-S/16
(tile 128 or 256) against a ViT-S/14 + DPT prompt-free model (the teacher class without a prompt).

    python scripts/sim2real/student_cost.py --vit16 vit_s16_flexi.safetensors [--threads 2] [--repeats 3]

Prints the median wall time per forward (the figure depends on the machine's load: compare rows of one run).
"""

from __future__ import annotations

import argparse
import time

import torch
from safetensors.torch import load_file

from metricanything.models.student import Student, StudentConfig
from metricanything.models.teacher import Teacher, teacher_config
from metricanything.models.vit import vit_config


def timed(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vit16", default=None, help="patch-16 ViT-S weights (flexi_patch.py --out); random if absent")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(1, 3, 480, 640)
    rows = []
    for tile in (128, 256):
        cfg = StudentConfig(vit=vit_config("small", patch_size=16, img_size=592), tile_size=tile,
                            hook_block_ids=(2, 5, 8, 11), encoder_dims=(96, 64, 96, 192), decoder_features=64)
        m = Student(cfg).eval()
        if args.vit16:
            m.encoder.patch_encoder.load_state_dict(load_file(args.vit16))
        n = sum(p.numel() for p in m.parameters())
        rows.append((f"official student, ViT-S/16 tile {tile} (network {4 * tile} px)", n,
                     timed(lambda m=m: m.infer(x, f_px=500.0), args.repeats)))
    for size in (224, 448):
        m = Teacher(teacher_config("small", image_size=size, prompt_hidden=0, prompt_reference="scalar",
                                   reassemble_channels=(24, 48, 96, 192), decoder_features=32, head_features=16)).eval()
        n = sum(p.numel() for p in m.parameters())
        rows.append((f"ViT-S/14 + light DPT, prompt-free, long side {size}", n, timed(lambda m=m: m(x, f_px=500.0), args.repeats)))
    for name, n, t in rows:
        print(f"{name:60s} {n / 1e6:6.2f} M params  {t:6.2f} s")


if __name__ == "__main__":
    main()
