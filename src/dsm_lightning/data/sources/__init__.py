"""Data sources: where a dataset's videos are and how they split, one small class per layout.

``register_source``, ``create_source`` and ``list_sources`` (in ``base``, a leaf module) keep
the registry; the built-in sources register themselves on import:

=================  =====================  ====================================================
 name               class                  layout
=================  =====================  ====================================================
 ``synthetic``      ``SyntheticSource``    generated scene-biased videos (``data.synthetic``)
 ``synthetic_*``    ``*SyntheticSource``   its presets ``synthetic_camera``, ``synthetic_clutter``
 ``folder``         ``FolderSource``       ``<root>/<class>/<video>``
 ``ucf101``         ``UCF101Source``       official ``ucfTrainTestlist`` split files
 ``hmdb51``         ``HMDB51Source``       official ``testTrainMulti_7030_splits`` files
 ``kinetics_csv``   ``KineticsCSVSource``  ``label,youtube_id,time_start,time_end,split`` CSV
 ``list``           ``ListSource``         ``relative/path label`` list files
 ``ssv2``           ``SSv2Source``         Something-Something v2 labels + train/validation JSON
 ``diving48``       ``Diving48Source``     Diving48 ``Diving48_V2_{train,test}.json`` splits
=================  =====================  ====================================================

Parsers never decode video. A malformed or missing annotation file raises
``AnnotationError`` naming the file and line; entries that can be dropped (unknown class
names, missing video files) are returned as ``SkippedItem`` so the data module applies its
``on_error`` policy. A user's own source subclasses ``VideoSource`` (see
``examples/custom_source.py``); a streamed format subclasses ``StreamingSource``
(``streaming``), which says how it is read (docs/scale.md).
"""

from __future__ import annotations

from dsm_lightning.data.sources.base import (
    AnnotationError,
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    create_source,
    drop_missing,
    list_sources,
    register_source,
    source_class,
)
from dsm_lightning.data.sources.diving48 import Diving48Source, read_diving48
from dsm_lightning.data.sources.folder import (
    FolderSource,
    add_test_tree,
    list_class_folders,
    read_folder,
    scan_folder,
)
from dsm_lightning.data.sources.hmdb51 import HMDB51Source, read_hmdb51
from dsm_lightning.data.sources.kinetics import KineticsCSVSource, read_kinetics_csv
from dsm_lightning.data.sources.lists import ListSource, read_list_files
from dsm_lightning.data.sources.ssv2 import SSv2Source, read_ssv2
from dsm_lightning.data.sources.streaming import StreamingSource
from dsm_lightning.data.sources.synthetic import (
    CameraSyntheticSource,
    ClutterSyntheticSource,
    SyntheticSource,
)
from dsm_lightning.data.sources.ucf101 import UCF101Source, read_ucf101

__all__ = [
    "AnnotationError", "CameraSyntheticSource", "ClutterSyntheticSource", "Diving48Source",
    "FolderSource", "HMDB51Source", "KineticsCSVSource", "ListSource", "SSv2Source",
    "SkippedItem", "SourceSplits", "StreamingSource", "SyntheticSource",
    "UCF101Source", "VideoRecord", "VideoSource", "add_test_tree", "create_source",
    "drop_missing", "list_class_folders", "list_sources", "read_diving48", "read_folder",
    "read_hmdb51", "read_kinetics_csv", "read_list_files", "read_ssv2", "read_ucf101",
    "register_source", "scan_folder", "source_class",
]
