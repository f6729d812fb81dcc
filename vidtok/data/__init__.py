"""Video data: decoding, frame sampling, transforms, CSV / folder / WebDataset sources, a shard writer.

from vidtok.data import VideoClipDataset, folder_records, collate_clips
ds = VideoClipDataset(folder_records("videos/"), num_frames=17, size=(256, 256), sample_fps=30, train=False)
loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_clips)
"""

from ..errors import DataError, DataSourceError, ShardWriterError, ShortVideoError
from ..io.video import read_clip, read_info
from .dataset import VideoClipDataset, collate_clips
from .latent_stats import LatentStats
from .latents import LatentDataset, decode_latent_sample, latent_shards
from .sampling import clip_indices, clip_span, eval_clips, frame_interval
from .shards import ShardSummary, write_shards
from .sources import (
    Failure,
    Record,
    csv_records,
    expand_urls,
    folder_records,
    shard_records,
    source_kind,
    video_records,
)
from .transforms import frames_to_clip
from .videos import VideoListConfig, VideoTask, list_videos

__all__ = [
    "DataError",
    "DataSourceError",
    "Failure",
    "LatentDataset",
    "LatentStats",
    "Record",
    "ShardSummary",
    "ShardWriterError",
    "ShortVideoError",
    "VideoClipDataset",
    "VideoListConfig",
    "VideoTask",
    "clip_indices",
    "clip_span",
    "collate_clips",
    "csv_records",
    "decode_latent_sample",
    "eval_clips",
    "expand_urls",
    "folder_records",
    "frame_interval",
    "frames_to_clip",
    "latent_shards",
    "list_videos",
    "read_clip",
    "read_info",
    "shard_records",
    "source_kind",
    "video_records",
    "write_shards",
]
