"""Sim-to-real prototypes: frozen pretrained encoder with cached tokens, decoder-only training.

Three sub-commands (``probe``: a token-grid CNN for prompt-free metric depth on the cached tokens)::

    # 1. N augmented training views of a source mixture (the pretrain data path: mixture -> oracle PDSA of
    #    untrusted renders -> random_augment to SIZE x SIZE), plus the frozen ViT's hooked tokens of each view
    python scripts/sim2real/cached.py cache --source folder:DATA/renders:1 --source folder:DATA/stereo_oakd:0.3 \
        --num 1500 --size 224 --backbone DATA/vit_s_focus.safetensors --out views.safetensors

    # 2. train a teacher (prompted, Robust MAE) or a prompt-free monocular model on cached views
    python scripts/sim2real/cached.py train --cache views.safetensors --mode teacher --minutes 15 --out RUN

``train --encoder frozen`` uses the cached tokens (only the decoder, prompt branch and refiner learn);
``--encoder finetune`` runs the ViT on the cached images with ``--encoder-lr-mult``; ``--preset tiny`` trains the
random-init tiny ViT end to end on the same views (the comparison). Each run writes a checkpoint folder
(``RUN/model``) loadable by ``metricanything.api.load_model`` and a ``RUN/log.json`` with the held-out figures
(``--val-cache``): teacher vs knn_plane reference vs Delaunay-linear at 1 % and 0.1 % prompts, or delta1/AbsRel.
One torch thread by default (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from metricanything.losses import robust_mae
from metricanything.models.checkpoint import save_pretrained
from metricanything.models.teacher import Teacher, teacher_config
from metricanything.train.data import imagenet_normalise

HOOKS = (2, 5, 8, 11)


# ---------------------------------------------------------------------------------------------- cache
def parse_source(spec: str):
    from metricanything.train.config import SourceConfig

    """``folder:PATH[:WEIGHT[:untrusted]]`` or ``render:SEED[:WEIGHT]`` (held-out renders: a seed far from the
    corpus' seeds, exact depth of the ``rendered`` kind only)."""
    parts = spec.split(":")
    weight = float(parts[2]) if len(parts) > 2 else 1.0
    if parts[0] == "render":
        return SourceConfig(kind="render", seed=int(parts[1]), weight=weight, render_size=[256, 192],
                            sources=["rendered"])
    trusted = not (len(parts) > 3 and parts[3] == "untrusted")
    return SourceConfig(kind=parts[0], path=parts[1], weight=weight, trusted=trusted)


def build_views(sources: list[str], num: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    from metricanything.train.config import DataConfig, PromptConfig, TrainConfig
    from metricanything.train.pretrain import PretrainDataset

    cfg = TrainConfig(data=DataConfig(size=size, sources=[parse_source(s) for s in sources]),
                      prompts=PromptConfig(prior="oracle"), seed=seed)
    ds = PretrainDataset(cfg)
    items = [ds[i] for i in range(num)]
    return {
        "image": torch.stack([(it["image"] * 255).round().to(torch.uint8) for it in items]),
        "depth": torch.stack([it["depth"] for it in items]),
        "valid": torch.stack([it["valid"] for it in items]).to(torch.uint8),
        "fx": torch.stack([it["fx"] for it in items]),
        "trusted": torch.stack([it["trusted"] for it in items]).to(torch.uint8),
        "source": torch.stack([it["source"] for it in items]),
    }


@torch.no_grad()
def encode_views(images_u8: torch.Tensor, backbone: str, hooks=HOOKS, chunk: int = 16) -> torch.Tensor:
    """Hooked, final-normed token maps (N x 4 x D x h x w, float16) of the frozen ViT-S/14."""
    model = Teacher(teacher_config("small", image_size=None))
    model.load_backbone(backbone)
    enc = model.encoder.eval()
    out = []
    for i in range(0, images_u8.shape[0], chunk):
        x = imagenet_normalise(images_u8[i:i + chunk].float() / 255.0)
        toks = enc.get_intermediate_layers(x, list(hooks), norm=True)
        out.append(torch.stack(list(toks), 1).half())
    return torch.cat(out)


def cmd_cache(args) -> None:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    views = build_views(args.source, args.num, args.size, args.seed)
    t1 = time.perf_counter()
    if args.backbone:
        views["tokens"] = encode_views(views["image"], args.backbone)
    t2 = time.perf_counter()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in views.items()}, args.out,
              metadata={"sources": json.dumps(args.source), "size": str(args.size), "seed": str(args.seed),
                        "backbone": str(args.backbone)})
    src = views["source"].bincount().tolist()
    print(f"{args.num} views ({src} per source) in {t1 - t0:.0f} s, tokens in {t2 - t1:.0f} s -> {args.out}")


# ---------------------------------------------------------------------------------------------- train
class CachedEncoder(torch.nn.Module):
    """Stands in for the ViT: returns the current batch's cached token maps."""

    def __init__(self, vit: torch.nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.patch_size = vit.patch_size
        self.tokens: torch.Tensor | None = None

    def get_intermediate_layers(self, x, ids, norm=True):  # noqa: ARG002 - same signature as the ViT's
        assert self.tokens is not None and self.tokens.shape[0] == x.shape[0]
        return [self.tokens[:, i].float() for i in range(self.tokens.shape[1])]


def build_model(args) -> Teacher:
    over = dict(image_size=args.size)
    if args.mode == "mono":
        over.update(prompt_hidden=0, prompt_reference="scalar")
    if args.preset == "tiny":
        over["vit"] = "tiny"
    if args.light:  # the tiny preset's decoder widths on the ViT-S tokens
        over.update(reassemble_channels=(24, 48, 96, 192), decoder_features=32, head_features=16, prompt_hidden=16,
                    refine_hidden=16)
        if args.mode == "mono":
            over.update(prompt_hidden=0, refine_hidden=0)
    model = Teacher(teacher_config("small" if args.preset == "small" else "tiny", **over))
    if args.preset == "small":
        model.load_backbone(args.backbone)
    if args.init:
        from metricanything.api import load_model

        src = load_model(args.init)
        missing = model.load_state_dict(src.state_dict(), strict=False)
        print(f"init from {args.init}: missing {len(missing.missing_keys)}, unexpected {len(missing.unexpected_keys)}")
    return model


def load_cache(paths: list[str], shares: list[float] | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Concatenated caches and per-view sampling weights (cache i draws ``shares[i]`` of the batches)."""
    parts = [load_file(p) for p in paths]
    keys = set.intersection(*(set(p) for p in parts))
    shares = shares or [float(p["image"].shape[0]) for p in parts]
    if len(shares) != len(parts):
        raise SystemExit("--cache-share needs one value per --cache")
    w = torch.cat([torch.full((p["image"].shape[0],), s / p["image"].shape[0]) for p, s in zip(parts, shares, strict=True)])
    return {k: torch.cat([p[k] for p in parts]) for k in keys}, w


def prompts_for(depth, valid, trusted, g, p_no_prompt: float):
    from metricanything.prompts.sampler import PromptSamplerConfig, sample_prompt_masks

    mask = sample_prompt_masks(valid, PromptSamplerConfig(), g)
    drop = (torch.rand(mask.shape[0], generator=g) < p_no_prompt) & trusted
    mask = mask & ~drop.view(-1, 1, 1, 1)
    return torch.where(mask, depth, torch.zeros_like(depth)), mask


def forward(model: Teacher, batch: dict, frozen: bool, pdepth=None, pmask=None) -> torch.Tensor:
    if frozen:
        model.encoder.tokens = batch["tokens"]
    x = imagenet_normalise(batch["image"].float() / 255.0)
    return model(x, pdepth, pmask, f_px=batch["fx"].double()).float()


def held_out(model: Teacher, val: dict, args, frozen: bool) -> dict:
    """Teacher: AbsRel of model / knn reference / linear at 1 % and 0.1 % prompts (own held-out views).
    Mono: delta1 / AbsRel (log-median ratio too)."""
    sys_path_realeval()
    from realeval import absrel, delta1

    model.eval()
    n = val["image"].shape[0]
    out: dict = {}
    with torch.no_grad():
        if args.mode == "teacher":
            from realeval import PromptSplit, linear_fill

            for dens in (0.01, 0.001):
                r_model, r_ref, r_lin = [], [], []
                for i in range(n):
                    b = {k: v[i:i + 1] for k, v in val.items()}
                    depth, valid = b["depth"][0, 0].numpy(), b["valid"][0, 0].numpy().astype(bool)
                    rng = np.random.default_rng(i)
                    vv, uu = np.nonzero(valid)
                    cnt = max(3, int(dens * valid.size))
                    if len(vv) < cnt + 10:
                        continue
                    pick = rng.choice(len(vv), size=cnt, replace=False)
                    pm = np.zeros_like(valid)
                    pm[vv[pick], uu[pick]] = True
                    sp = PromptSplit(np.where(pm, depth, 0).astype(np.float32), pm, valid & ~pm,
                                     np.stack([uu[pick], vv[pick]], 1).astype(np.float64), depth[vv[pick], uu[pick]])
                    pd_t = torch.from_numpy(sp.depth)[None, None]
                    pm_t = torch.from_numpy(pm)[None, None]
                    pred = forward(model, b, frozen, pd_t, pm_t)[0, 0].numpy()
                    r_model.append(absrel(pred, depth, sp.score))
                    r_ref.append(absrel(knn_ref(sp.depth, pm), depth, sp.score))
                    r_lin.append(absrel(linear_fill(sp, depth.shape), depth, sp.score))
                lin = np.array(r_lin)
                out[f"{dens:g}"] = {
                    "model_vs_linear": float(np.exp(np.mean(np.log(np.array(r_model) / lin)))),
                    "knn_vs_linear": float(np.exp(np.mean(np.log(np.array(r_ref) / lin)))),
                    "n": len(lin),
                }
        else:
            d1, ar, lr = [], [], []
            for i in range(n):
                b = {k: v[i:i + 1] for k, v in val.items()}
                depth, valid = b["depth"][0, 0].numpy(), b["valid"][0, 0].numpy().astype(bool)
                if valid.sum() < 10 or not bool(b["trusted"][0]):
                    continue
                pred = forward(model, b, frozen)[0, 0].numpy()
                d1.append(delta1(pred, depth, valid))
                ar.append(absrel(pred, depth, valid))
                lr.append(float(np.median(np.log(pred[valid] / depth[valid]))))
            out = {"delta1": float(np.mean(d1)), "absrel": float(np.mean(ar)),
                   "mean_abs_log_median_ratio": float(np.mean(np.abs(lr))), "n": len(d1)}
    model.train()
    return out


def sys_path_realeval() -> None:
    import sys

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)


def knn_ref(pdepth: np.ndarray, pmask: np.ndarray) -> np.ndarray:
    sys_path_realeval()
    from realeval import knn_plane_only

    return knn_plane_only(None, None, pdepth, pmask)


def cmd_train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sys_path_realeval()
    from realeval import uncap_knn

    uncap_knn()
    data, weights = load_cache(args.cache, args.cache_share)
    val = load_cache(args.val_cache)[0] if args.val_cache else None
    frozen = args.encoder == "frozen" and args.preset == "small"
    if frozen and "tokens" not in data:
        raise SystemExit("--encoder frozen needs caches made with --backbone")
    model = build_model(args)
    vit = model.encoder
    if frozen:
        model.encoder = CachedEncoder(vit)
        for p in vit.parameters():
            p.requires_grad_(False)
    enc_params = [p for n, p in model.named_parameters() if n.startswith("encoder.") and p.requires_grad]
    other = [p for n, p in model.named_parameters() if not n.startswith("encoder.") and p.requires_grad]
    if args.encoder == "frozen" and args.preset == "small":
        enc_params = []
    groups = [{"params": other, "lr": args.lr}]
    if enc_params and args.encoder_lr_mult > 0:
        groups.append({"params": enc_params, "lr": args.lr * args.encoder_lr_mult})
    elif enc_params:
        for p in enc_params:
            p.requires_grad_(False)
    opt = torch.optim.AdamW(groups, weight_decay=0.05)
    base_lrs = [g["lr"] for g in groups]
    if args.mode == "mono":  # untrusted views that PDSA could not prepare teach no metric scale
        weights = weights * data["trusted"].float()
    g = torch.Generator().manual_seed(args.seed)
    log = {"args": vars(args), "steps": [], "val": []}
    t0 = time.perf_counter()
    budget = args.minutes * 60.0
    step = 0
    model.train()
    if frozen:
        vit.eval()
    while True:
        elapsed = time.perf_counter() - t0
        if (args.steps and step >= args.steps) or (not args.steps and elapsed >= budget):
            break
        frac = step / args.steps if args.steps else elapsed / budget
        warm = min(1.0, (step + 1) / 50)
        lr_scale = warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for grp, lr0 in zip(opt.param_groups, base_lrs, strict=True):
            grp["lr"] = lr0 * lr_scale
        idx = torch.multinomial(weights, args.batch_size, replacement=False, generator=g)
        b = {k: v[idx] for k, v in data.items()}
        depth, valid = b["depth"], b["valid"].bool()
        if args.mode == "teacher":
            pd, pm = prompts_for(depth, valid, b["trusted"].bool(), g, args.p_no_prompt)
            pred = forward(model, b, frozen, pd, pm)
        else:
            pred = forward(model, b, frozen)
        loss = robust_mae(pred, depth, valid, trim=0.2, space="log")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for grp in groups for p in grp["params"]], 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            rec = {"step": step, "loss": float(loss.detach()), "s": round(time.perf_counter() - t0, 1)}
            log["steps"].append(rec)
            print(rec, flush=True)
    train_s = time.perf_counter() - t0
    if frozen:
        model.encoder = vit
    out = Path(args.out)
    save_pretrained(model, out / "model", extra_card={"sim2real": vars(args)})
    log["train_s"], log["steps_done"] = train_s, step
    if val is not None:
        if frozen:
            val = dict(val)  # the full model runs the ViT itself at evaluation
        log["val"] = held_out(model, val, args, frozen=False)
        print("held-out:", json.dumps(log["val"]))
    (out / "log.json").write_text(json.dumps(log, indent=1))
    print(f"{step} steps in {train_s:.0f} s -> {out / 'model'}")


# ---------------------------------------------------------------------------------------------- probe
class TokenProbe(torch.nn.Module):
    """Prompt-free metric depth from frozen ViT tokens: a small CNN on the token grid predicting the canonical
    log depth ln(z W / f) per token (the student's convention), bilinearly upsampled to the image."""

    def __init__(self, dim: int = 384, layers: int = 4, hidden: int = 128) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(dim * layers, hidden, 1), torch.nn.GELU(),
            torch.nn.Conv2d(hidden, hidden, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(hidden, hidden, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(hidden, 1, 1),
        )
        torch.nn.init.constant_(self.net[-1].bias, 1.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # B x L x D x h x w -> B x 1 x h x w
        return self.net(tokens.flatten(1, 2).float())


def cell_targets(depth: torch.Tensor, valid: torch.Tensor, fx: torch.Tensor, grid: tuple[int, int]):
    """Mean canonical log depth ln(z W / f) of the valid pixels of each token cell, and cell validity."""
    w = depth.shape[-1]
    canon = torch.log(depth.clamp_min(1e-6) * w / fx.view(-1, 1, 1, 1))
    v = valid.float()
    num = torch.nn.functional.adaptive_avg_pool2d(canon * v, grid)
    den = torch.nn.functional.adaptive_avg_pool2d(v, grid)
    return num / den.clamp_min(1e-6), den > 0.25


def cmd_probe(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data, weights = load_cache(args.cache, args.cache_share)
    weights = weights * data["trusted"].float()
    grid = tuple(data["tokens"].shape[-2:])
    targets, tvalid = cell_targets(data["depth"], data["valid"].bool(), data["fx"], grid)
    probe = TokenProbe(layers=data["tokens"].shape[1])
    opt = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=0.05)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    log = {"args": vars(args), "steps": []}
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = torch.multinomial(weights, args.batch_size, replacement=False, generator=g)
        tok = data["tokens"][idx]
        if torch.rand(1, generator=g) < 0.5:  # horizontal flip of tokens and targets (cells are symmetric)
            tok, tgt, tv = tok.flip(-1), targets[idx].flip(-1), tvalid[idx].flip(-1)
        else:
            tgt, tv = targets[idx], tvalid[idx]
        pred = probe(tok)
        loss = ((pred - tgt).abs() * tv).sum() / tv.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            rec = {"step": step, "loss": float(loss.detach()), "s": round(time.perf_counter() - t0, 1)}
            log["steps"].append(rec)
            print(rec, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(probe.state_dict(), str(out / "probe.safetensors"))
    log["train_s"] = time.perf_counter() - t0
    if args.val_cache:
        val = load_cache(args.val_cache)[0]
        vt, vv = cell_targets(val["depth"], val["valid"].bool(), val["fx"], grid)
        with torch.no_grad():
            p = probe(val["tokens"])
        keep = val["trusted"].bool()
        err = ((p - vt).abs() * vv).flatten(1).sum(1) / vv.flatten(1).sum(1).clamp_min(1)
        d1 = ((((p - vt).abs() < math.log(1.25)) & vv).flatten(1).sum(1) / vv.flatten(1).sum(1).clamp_min(1))
        log["val"] = {"cell_log_l1": float(err[keep].mean()), "cell_delta1": float(d1[keep].mean())}
        print("held-out:", log["val"])
    (out / "log.json").write_text(json.dumps(log, indent=1))


class ProbeModel(torch.nn.Module):
    """Frozen ViT-S/14 + TokenProbe as one monocular model: (image uint8, intrinsics) -> depth (metres)."""

    def __init__(self, backbone: str, probe_path: str, image_size: int = 224) -> None:
        super().__init__()
        t = Teacher(teacher_config("small", image_size=None))
        t.load_backbone(backbone)
        self.vit = t.encoder.eval()
        self.probe = TokenProbe()
        self.probe.load_state_dict(load_file(probe_path))
        self.image_size = image_size

    @torch.no_grad()
    def depth(self, image: np.ndarray, fx: float) -> np.ndarray:
        from metricanything.models.teacher import network_size

        h, w = image.shape[:2]
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        hs, ws, hp, wp = network_size(h, w, self.image_size, 14)
        x = torch.nn.functional.interpolate(x, size=(hs, ws), mode="bilinear", antialias=True, align_corners=False)
        x = torch.nn.functional.pad(imagenet_normalise(x), (0, wp - ws, 0, hp - hs))
        tok = torch.stack(list(self.vit.get_intermediate_layers(x, list(HOOKS), norm=True)), 1)
        c = self.probe(tok)  # canonical log depth on the token grid of the padded input
        c = torch.nn.functional.interpolate(c, size=(hp, wp), mode="bilinear", align_corners=False)[..., :hs, :ws]
        c = torch.nn.functional.interpolate(c, size=(h, w), mode="bilinear", align_corners=False)
        return (torch.exp(c) * fx / w)[0, 0].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--source", action="append", required=True, help="folder:PATH[:WEIGHT[:untrusted]] or render:SEED[:WEIGHT]")
    c.add_argument("--num", type=int, default=1000)
    c.add_argument("--size", type=int, default=224)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--backbone", default=None)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--cache", action="append", required=True)
    t.add_argument("--cache-share", type=float, action="append", default=None,
                   help="share of the batches drawn from each --cache (default: by size)")
    t.add_argument("--val-cache", action="append", default=None)
    t.add_argument("--mode", choices=("teacher", "mono"), default="teacher")
    t.add_argument("--preset", choices=("small", "tiny"), default="small")
    t.add_argument("--encoder", choices=("frozen", "finetune"), default="frozen")
    t.add_argument("--encoder-lr-mult", type=float, default=0.1)
    t.add_argument("--backbone", default=None)
    t.add_argument("--init", default=None, help="start from this checkpoint (matching keys)")
    t.add_argument("--light", action="store_true", help="tiny-preset decoder widths (about 4x cheaper)")
    t.add_argument("--size", type=int, default=224, help="the model's image_size (long side)")
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--p-no-prompt", type=float, default=0.1)
    t.add_argument("--minutes", type=float, default=15.0)
    t.add_argument("--steps", type=int, default=0, help="fixed step count instead of --minutes")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--out", required=True)
    p = sub.add_parser("probe", help="token-grid CNN probe for prompt-free metric depth (cached tokens)")
    p.add_argument("--cache", action="append", required=True)
    p.add_argument("--cache-share", type=float, action="append", default=None)
    p.add_argument("--val-cache", action="append", default=None)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    {"cache": cmd_cache, "train": cmd_train, "probe": cmd_probe}[args.cmd](args)


if __name__ == "__main__":
    main()
