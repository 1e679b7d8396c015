"""Data sources: tar shards streamed with webdataset (shards.py, written by pack.py) and the small
package-shipped sets held in memory (builtin.py, memory.py). `build_feed` picks one for training."""
from hifigan.data.memory import InMemoryImages, MemoryFeed, build_dataset  # noqa: F401


def build_feed(cfg, seed: int, rank: int, world: int, batch_gpu: int, img_shape, num_classes: int, device):
    """The training loop's data: shards when `data.shards` is set, else the in-memory `data.source`."""
    if cfg.shards:
        from hifigan.data.shards import ShardFeed
        return ShardFeed(cfg, seed, rank, world, batch_gpu, img_shape, num_classes, device)
    from hifigan.errors import UserError
    data = build_dataset(cfg, seed)
    if tuple(img_shape) != data.shape:
        raise UserError(f"data images are {list(data.shape)} (C, H, W) but G makes {list(img_shape)}; "
                        f"set data.resolution and G/D resolution and channels to agree")
    return MemoryFeed(data, batch_gpu, seed, cfg.xflip)
