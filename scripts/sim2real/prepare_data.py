"""Write the real sources fetched by ``prepare_data.sh`` as folder datasets (one sample folder per frame).

    python scripts/sim2real/prepare_data.py --cache CACHE --out OUT

reads ``CACHE/stereodemo/oak-d`` (rectified OAK-D Lite pairs + calibration) and ``CACHE/mrpt/tests_rgbd.rawlog``,
writes ``OUT/stereo_oakd/<id>/`` (SGBM depth, see ``metricanything.data.loaders.stereo_pairs``) and
``OUT/mrpt_rgbd/<id>/`` (the OpenNI2 RGB-D frame), each with ``index.json``, and prints per-sample statistics.
``--holdout`` names stereo pairs written to ``OUT/stereo_oakd_val`` instead (for choosing hyper-parameters).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from metricanything.data.folder import write_index, write_sample
from metricanything.data.loaders import load_dataset

HOLDOUT = ("stairs", "toy")
LICENCES = {
    "stereo_oakd": "CC BY 4.0 (stereodemo datasets/oak-d, (c) Nicolas Burrus; package code MIT)",
    "mrpt_rgbd": "BSD-3-Clause (Debian mrpt-common, usr/share/mrpt/datasets/tests_rgbd.rawlog, (c) MRPT authors)",
}


def _write(samples, root: Path, source: str) -> list[str]:
    ids = []
    for s in samples:
        s = s.replace(meta={**s.meta, "licence": LICENCES[source]})
        write_sample(root, s, depth_format="npy")
        ids.append(s.sample_id)
        d = s.depth[s.valid]
        print(f"{source:12s} {s.sample_id:24s} valid {s.valid.mean():.2f} depth p5/50/95 "
              f"{np.percentile(d, 5):.2f}/{np.percentile(d, 50):.2f}/{np.percentile(d, 95):.2f} m fx {s.intrinsics.fx:.1f}")
    if ids:
        write_index(root, ids)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--holdout", nargs="*", default=list(HOLDOUT), help="stereo pair names kept for validation")
    args = ap.parse_args()
    pairs = list(load_dataset("stereo_pairs", args.cache / "stereodemo"))
    hold = set(args.holdout)
    _write([s for s in pairs if s.scene_id.rsplit("/", 1)[-1] not in hold], args.out / "stereo_oakd", "stereo_oakd")
    _write([s for s in pairs if s.scene_id.rsplit("/", 1)[-1] in hold], args.out / "stereo_oakd_val", "stereo_oakd")
    _write(list(load_dataset("mrpt_rawlog", args.cache / "mrpt")), args.out / "mrpt_rgbd", "mrpt_rgbd")


if __name__ == "__main__":
    main()
