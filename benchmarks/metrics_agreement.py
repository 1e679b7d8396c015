#!/usr/bin/env python
"""Our FID, KID and IS beside torch-fidelity 0.4.0's on the same Inception weights file and the same
image sets, and the feature network's throughput.

    python benchmarks/metrics_agreement.py [--inception FILE] [--n 50] [--size 64] [--device cpu]

Without --inception a random-weight FID Inception (He init) is built, as the tests do: the estimators
and the pipeline (TF1 resizing, the TF graph's pooling) are compared, not ImageNet features. The sets
are n random crops of skimage's astronaut (real) and coffee (fake) photographs. torch-fidelity is
imported with a placeholder torchvision (tests/test_metrics_protocols.py says why). Prints a markdown
table: figure, ours, theirs, relative difference; then seconds per image of each extractor.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inception", default=None)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    from test_metrics_protocols import _U8, FIDInceptionV3, import_fidelity, photo_crops

    from hifigan.metrics.features import batched, to_nchw
    from hifigan.metrics.frechet import frechet_distance, gaussian_fit
    from hifigan.metrics.inception import load_inception
    from hifigan.metrics.isc import inception_score
    from hifigan.metrics.kid import kernel_inception_distance
    tmp = tempfile.mkdtemp()
    path = a.inception
    if path is None:
        g = torch.Generator().manual_seed(0)
        net = FIDInceptionV3()
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.data = torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5
        path = f"{tmp}/pt_inception-random.pth"
        torch.save(net.state_dict(), path)
    real, fake = photo_crops("astronaut", a.n, a.size, 0), photo_crops("coffee", a.n, a.size, 1)
    subset = min(a.n, 1000) // 2
    t = time.time()
    inc = load_inception(path, a.device)
    fr, ff = batched(inc.pool, to_nchw(real), 25, a.device), batched(inc.pool, to_nchw(fake), 25, a.device)
    ours_s = (time.time() - t) / (2 * a.n)
    probs = batched(inc.probs, to_nchw(fake), 25, a.device)
    kid, kid_std = kernel_inception_distance(fr, ff, 100, subset, 2020)
    ours = {"fid": frechet_distance(gaussian_fit(fr), gaussian_fit(ff)), "kid": kid, "kid_std": kid_std,
            "is (1 split)": inception_score(probs, 1)[0]}
    tf = import_fidelity()
    t = time.time()
    m = tf.calculate_metrics(input1=_U8(real), input2=_U8(fake), fid=True, kid=True, isc=True, isc_splits=1,
                             feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(path),
                             kid_subset_size=subset, kid_subsets=100, cuda=a.device != "cpu", verbose=False,
                             cache=False, batch_size=25)
    theirs_s = (time.time() - t) / (2 * a.n)
    theirs = {"fid": m["frechet_inception_distance"], "kid": m["kernel_inception_distance_mean"],
              "kid_std": m["kernel_inception_distance_std"], "is (1 split)": m["inception_score_mean"]}
    print(f"{a.n} + {a.n} images at {a.size}², weights {Path(path).name}, KID 100 subsets of {subset}, "
          f"torch {torch.__version__}, torch-fidelity {tf.__version__}\n")
    print("| figure | hifigan | torch-fidelity | relative difference |\n|---|---|---|---|")
    for k in ours:
        print(f"| {k} | {ours[k]:.6g} | {theirs[k]:.6g} | {abs(ours[k] - theirs[k]) / abs(theirs[k]):.1e} |")
    print(f"\nseconds per image (Inception at 299², {a.device}): hifigan {ours_s:.3f}, "
          f"torch-fidelity (incl. its IS pass) {theirs_s:.3f}")


if __name__ == "__main__":
    main()
