"""``metricanything pack``: pack folder datasets or native datasets into WebDataset-style tar shards."""

from __future__ import annotations

import argparse

from metricanything.errors import InvalidInputError


def configure(parser: argparse.ArgumentParser) -> None:
    from metricanything.data.loaders import loader_names

    parser.add_argument(
        "sources", nargs="+", metavar="SRC",
        help="a folder dataset, or LOADER:ROOT / LOADER@SPLIT:ROOT for a native dataset "
        f"(loaders: {', '.join(loader_names())})",
    )
    parser.add_argument("--out", required=True, help="output folder for shard-NNNNNN.tar and shard-index.json")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    parser.add_argument("--prefix", default="shard", help="shard file prefix (default 'shard')")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png", help="image encoding (default png)")
    parser.add_argument("--overwrite", action="store_true", help="replace shards with the same prefix in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from metricanything.atomic import check_output_dir
    from metricanything.data.shards import pack

    if args.shard_size < 1:
        raise InvalidInputError(f"--shard-size must be >= 1, got {args.shard_size}")
    check_output_dir(args.out, "--out")
    result = pack(
        args.sources, args.out, prefix=args.prefix, max_samples_per_shard=args.shard_size,
        image_format=args.image_format, progress=not args.no_progress, overwrite=args.overwrite,
    )
    print(f"wrote {result.samples} samples in {len(result.paths)} shard(s) to {args.out}")
    return 0
