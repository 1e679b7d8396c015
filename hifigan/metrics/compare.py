"""Metrics between two image sets (`launch/metrics.py --real A --fake B --metrics fid,kid`): each set
an image folder or an .npz holding `images` uint8 [N, H, W, C]. Figures, by name:
    fid          Frechet Inception distance (2048-d pool features)
    kid          kernel Inception distance (mean over subsets; `kid_std` beside it)
    is           Inception Score of the fake set (`is_std` beside it)
    pr           precision and recall (VGG16 fc2 features, k nearest neighbours)
The same feature networks and estimators as the protocol metrics (protocols.py), with their options.
"""
from __future__ import annotations

from hifigan.errors import UserError

PAIR_METRICS = ("fid", "kid", "is", "pr")


def compare_image_sets(real, fake, names, inception=None, vgg=None, device="cpu", kid_subsets: int = 100,
                       kid_subset_size: int = 1000, kid_seed: int = 2020, is_splits: int = 10, pr_k: int = 3,
                       batch: int = 64) -> dict:
    """The figures `names` of image sets `real` and `fake` (paths), as one flat dict."""
    import numpy as np

    from hifigan.metrics.features import batched, load_image_set, to_nchw
    from hifigan.metrics.frechet import frechet_distance, gaussian_fit
    bad = [n for n in names if n not in PAIR_METRICS]
    if bad or not names:
        raise UserError(f"--metrics {','.join(bad) or '(none)'}: with --real/--fake choose from {','.join(PAIR_METRICS)}")
    a = to_nchw(load_image_set(real)) if real is not None else None
    b = to_nchw(load_image_set(fake))
    if a is None and set(names) - {"is"}:
        raise UserError("--real is needed for fid, kid and pr (only is scores the fake set alone)")
    out: dict = {}
    if set(names) & {"fid", "kid", "is"}:
        from hifigan.metrics.inception import load_inception
        net = load_inception(inception, device)
        if set(names) & {"fid", "kid"}:
            fa, fb = batched(net.pool, a, batch, device), batched(net.pool, b, batch, device)
            if "fid" in names:
                out["fid"] = frechet_distance(gaussian_fit(fa), gaussian_fit(fb))
            if "kid" in names:
                from hifigan.metrics.kid import kernel_inception_distance
                out["kid"], out["kid_std"] = kernel_inception_distance(fa, fb, kid_subsets, kid_subset_size, kid_seed)
        if "is" in names:
            from hifigan.metrics.isc import inception_score
            out["is"], out["is_std"] = inception_score(batched(net.probs, b, batch, device), is_splits)
    if "pr" in names:
        from hifigan.metrics.pr import precision_recall
        from hifigan.metrics.vgg import load_vgg16
        v = load_vgg16(vgg, device)
        out["precision"], out["recall"] = precision_recall(batched(v.fc2, a, batch, device),
                                                           batched(v.fc2, b, batch, device), pr_k)
    out["real_images"] = None if a is None else int(len(a))
    out["fake_images"] = int(len(b))
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}
