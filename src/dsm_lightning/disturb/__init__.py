"""Device-side disturbances and the DSM triplet builder (plain tensor code, no Lightning).

- ``rng``: random draws (uniforms, weighted choices) from explicit generators.
- ``geometry`` / ``colour``: the per-clip affine and colour maps of the simple augmentation;
  ``simple``: applying them (one interpolation, one matrix product); ``crops``: evaluation
  crops. Normalisation lives in ``dsm_lightning.normalization``.
- ``spatial``: Spatial Local Disturbance fields (thin-plate spline, point warps) and ``warp``.
- ``temporal``: Temporal Local Disturbance frame re-orderings.
- ``transform``: ``ClipTransform``, the clip transform of training and evaluation (simple
  augmentation, evaluation crops, normalisation).
- ``views``: ``ViewBuilder``, the contract of the pretraining view builders.
- ``triplet``: ``TripletBuilder``, the DSM view builder composing them.
- ``background_erasing`` / ``fame``: the view builders of two other scene-bias remedies.
- ``visualize``: PNG grid / GIF of a triplet, image of a warp field.
"""

from dsm_lightning.disturb.background_erasing import BackgroundErasingBuilder, background_erasing
from dsm_lightning.disturb.colour import JITTER_MODES
from dsm_lightning.disturb.crops import spatial_crops
from dsm_lightning.disturb.fame import (
    FAMEBuilder,
    ForegroundMask,
    foreground_mask,
    merge_foreground,
)
from dsm_lightning.disturb.simple import SimpleAugParams, augment_clips
from dsm_lightning.disturb.spatial import (
    POINT_DIRECTIONS,
    SPATIAL_KINDS,
    PointWarp,
    SpatialDisturbance,
    TPSWarp,
    register_spatial_kind,
    sample_disturbance_field,
    sample_point_field,
    sample_tps_field,
    spatial_kinds,
    warp,
)
from dsm_lightning.disturb.temporal import (
    CLIP_KINDS,
    FRAME_KINDS,
    NEGATIVE_KINDS,
    TemporalDisturbance,
    frame_kinds,
    insert_indices,
    register_frame_kind,
    reorder_frames,
    reverse_indices,
    sample_frame_indices,
    shuffle_indices,
    static_indices,
    swap_indices,
)
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.disturb.triplet import TripletBuilder
from dsm_lightning.disturb.views import ViewBuilder
from dsm_lightning.disturb.visualize import (
    field_image,
    save_triplet_gif,
    save_triplet_png,
    triplet_grid,
)
from dsm_lightning.normalization import KINETICS_MEAN, KINETICS_STD, denormalize, normalize

__all__ = [
    "BackgroundErasingBuilder",
    "FAMEBuilder",
    "ForegroundMask",
    "PointWarp",
    "SpatialDisturbance",
    "TPSWarp",
    "TemporalDisturbance",
    "register_spatial_kind",
    "spatial_kinds",
    "background_erasing",
    "foreground_mask",
    "merge_foreground",
    "CLIP_KINDS",
    "ClipTransform",
    "FRAME_KINDS",
    "JITTER_MODES",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "NEGATIVE_KINDS",
    "POINT_DIRECTIONS",
    "frame_kinds",
    "register_frame_kind",
    "SPATIAL_KINDS",
    "SimpleAugParams",
    "TripletBuilder",
    "ViewBuilder",
    "augment_clips",
    "denormalize",
    "field_image",
    "insert_indices",
    "normalize",
    "reorder_frames",
    "reverse_indices",
    "sample_disturbance_field",
    "sample_frame_indices",
    "sample_point_field",
    "sample_tps_field",
    "save_triplet_gif",
    "save_triplet_png",
    "shuffle_indices",
    "spatial_crops",
    "static_indices",
    "swap_indices",
    "triplet_grid",
    "warp",
]
