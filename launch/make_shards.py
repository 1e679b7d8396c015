#!/usr/bin/env python
"""Pack an image folder, a .zip, a .npy/.npz array or a built-in set (mnist, lfw) into tar shards
OUT/NAME-000000.tar, ... and OUT/dataset.json, for webdataset streaming.

    python launch/make_shards.py --source photos/ --out data/photos --resolution 256

Crop policy: center = crop the centred square on the shorter side, then resize with PIL's LANCZOS
(antialiased when shrinking); stretch = resize to R x R without cropping; none = keep only images
that are already R x R. Without --resolution, R is the shorter side of the first image.
Labels (auto): labels.json in the source root, else first-level sub-folder names when every image
sits in one and there are at least 2, else none. Class names are sorted; int classes keep their
value. Rerunning the same command resumes an interrupted run. More in hifigan/data/pack.py.
Symlinked folders are followed, each real folder once (a link back to an ancestor is reported and
not followed again); dangling links and unreadable files are skipped and counted like undecodable
images. A source or --out that cannot be used, or a failed write (disk full), is one line, exit 2.

Paired sets for semantic image synthesis (SPADE): each image with its label map (KEY.seg.png) and,
where given, its instance map (KEY.inst.png, 16-bit). dataset.json records "paired", "label_nc"
and "instance"; the trainer then feeds c = the maps.

    # Cityscapes (root holds leftImg8bit/ and gtFine/), SPADE's 512 x 256, 35 labels, instance maps
    python launch/make_shards.py --layout cityscapes --source /data/cityscapes --split train \
        --out data/cityscapes512 --resolution 512 --aspect-ratio 2 --encoding png
    # ADE20K (ADEChallengeData2016: images/training/*.jpg, annotations/training/*.png), 256 x 256,
    # 151 labels (0 = other / don't care, kept as label 0)
    python launch/make_shards.py --layout ade20k --source /data/ADEChallengeData2016 --split training \
        --out data/ade20k256 --resolution 256
    # any folder pair matched by file stem
    python launch/make_shards.py --source photos/ --labelmaps maps/ [--instancemaps inst/] --out ...

--label-nc N fixes the label count (default: 35 for cityscapes, 151 for ade20k, else the largest id
packed + 1; maps holding an id >= N are skipped). --aspect-ratio A packs W x H = R x R/A images
(centre crop to that aspect; LANCZOS for images, NEAREST for maps).
"""
import argparse
import sys

from hifigan.errors import run_main


def _pack(args) -> None:
    from hifigan.data.pack import pack, summarize
    meta = pack(args.source, args.out, name=args.name, resolution=args.resolution, crop=args.crop,
                encoding=args.encoding, quality=args.quality, reencode=args.reencode, channels=args.channels,
                shard_mb=args.shard_mb, shard_samples=args.shard_samples, labels=args.labels,
                labelmaps=args.labelmaps, workers=args.workers, shuffle=not args.no_shuffle, seed=args.seed,
                force=args.force, progress=not args.no_progress, instancemaps=args.instancemaps, layout=args.layout,
                split=args.split, label_nc=args.label_nc, aspect_ratio=args.aspect_ratio)
    print(summarize(meta))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="image folder, .zip, .npy/.npz, or mnist | lfw")
    p.add_argument("--out", required=True, help="output folder for the shards and dataset.json")
    p.add_argument("--name", default=None, help="shard name prefix (default: the --out folder's name)")
    p.add_argument("--resolution", type=int, default=None,
                   help="width R of the images, R x R when square (default: the first image's shorter side)")
    p.add_argument("--aspect-ratio", type=float, default=1.0,
                   help="width / height of the packed images (Cityscapes SPADE: 2 for 512 x 256); needs --resolution")
    p.add_argument("--crop", default="center", choices=["center", "stretch", "none"],
                   help="center: centre square + LANCZOS resize; stretch: resize only; none: skip non-R x R images")
    p.add_argument("--encoding", default="jpg", choices=["jpg", "png", "webp"], help="jpg, png or lossless webp")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality 1..100 (4:4:4 chroma)")
    p.add_argument("--reencode", action="store_true", help="re-encode JPEGs that could be stored unchanged")
    p.add_argument("--channels", type=int, default=None, choices=[1, 3], help="default: 1 if the first image is gray")
    p.add_argument("--shard-mb", type=float, default=256.0, help="shard size cap in MB (1e6 bytes)")
    p.add_argument("--shard-samples", type=int, default=10000, help="shard sample cap")
    p.add_argument("--labels", default="auto", help="auto | folders | none | PATH to a labels JSON")
    p.add_argument("--labelmaps", default=None, help="folder of label maps matched by file stem (SPADE)")
    p.add_argument("--instancemaps", default=None, help="folder of instance maps matched by file stem (8/16-bit)")
    p.add_argument("--layout", default=None, help="cityscapes | ade20k: --source is that dataset's root folder")
    p.add_argument("--split", default=None, help="split folder of a --layout (default: train / training)")
    p.add_argument("--label-nc", type=int, default=None,
                   help="label count of a paired set (default: cityscapes 35, ade20k 151, else max id + 1)")
    p.add_argument("--workers", type=int, default=1, help="encoding processes (output is the same for any number)")
    p.add_argument("--no-shuffle", action="store_true", help="keep the sorted path order")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed")
    p.add_argument("--force", action="store_true", help="replace another dataset already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    return run_main(_pack, args)


if __name__ == "__main__":
    sys.exit(main())
