"""Data sources: tar shards streamed with webdataset (shards.py, written by pack.py) and the small
package-shipped sets held in memory (builtin.py, memory.py). `build_feed` picks one for training.

A feed's `next(chunk, device)` gives (img, c): img float [n, C, H, W] in [-1, 1]; c is None
(unconditional), int64 [n] class labels, or, for a paired set (SPADE), int64 [n, 1, H, W] label
ids in [0, label_nc) with a second channel of instance ids when the set has instance maps and G
uses them (`instance`). A feed says which through `num_classes`, `label_nc` and `instance`."""
from hifigan.data.memory import InMemoryImages, MemoryFeed, build_dataset  # noqa: F401


def build_feed(cfg, seed: int, rank: int, world: int, batch_gpu: int, img_shape, num_classes: int, device,
               G=None):
    """The training loop's data: shards when `data.shards` is set, else the in-memory `data.source`.
    `G` (optional) is the generator: its `label_nc` (int, default 0) and `instance` (bool, default
    False) must agree with a paired set; without G both defaults apply."""
    from hifigan.errors import UserError
    label_nc, instance = int(getattr(G, "label_nc", 0) or 0), bool(getattr(G, "instance", False))
    if cfg.shards:
        from hifigan.data.shards import ShardFeed
        feed = ShardFeed(cfg, seed, rank, world, batch_gpu, img_shape, num_classes, device, instance=instance)
    else:
        data = build_dataset(cfg, seed)
        if tuple(img_shape) != data.shape:
            raise UserError(f"data images are {list(data.shape)} (C, H, W) but G makes {list(img_shape)}; "
                            f"set data.resolution and G/D resolution and channels to agree")
        feed = MemoryFeed(data, batch_gpu, seed, cfg.xflip)
    check_pairing(feed.label_nc, feed.instance, label_nc, instance, "data.shards" if cfg.shards else
                  f"data.source={cfg.source}")
    return feed


def check_pairing(data_label_nc: int, data_instance: bool, g_label_nc: int, g_instance: bool, what: str) -> None:
    """One-line UserError unless a paired set (data_label_nc > 0) meets a G with the same label count
    (and an unpaired set a G without one); a G that uses instance maps needs a set that has them."""
    from hifigan.errors import UserError
    if data_label_nc and not g_label_nc:
        raise UserError(f"{what}: a paired set ({data_label_nc} labels in its label maps) but G takes no label "
                        f"maps (no label_nc); use a semantic-synthesis G (spade) or unpaired data")
    if g_label_nc and not data_label_nc:
        raise UserError(f"{what}: G takes label maps (label_nc={g_label_nc}) but the data has none; use "
                        f"data.source=mnist_labelmaps or shards packed with label maps (make_shards.py --layout "
                        f"or --labelmaps)")
    if g_label_nc != data_label_nc:
        raise UserError(f"{what}: G has label_nc={g_label_nc} but the data's label maps have {data_label_nc} "
                        f"labels; set G.label_nc={data_label_nc}")
    if g_instance and not data_instance:
        raise UserError(f"{what}: G uses instance maps (instance=true) but the data has none; set "
                        f"G.instance=false or pack instance maps (make_shards.py --instancemaps or --layout "
                        f"cityscapes)")
