"""Downstream evaluation as plain tensor code: retrieval, video-level accuracy, scene bias, the
out-of-context tests synthesized from labelled clips, several seeds summarised."""

from dsm_lightning.evaluation.aggregate import aggregate_runs, findings, rank_agreement
from dsm_lightning.evaluation.cam import grad_cam, last_feature_map_layer, save_cam_grid
from dsm_lightning.evaluation.out_of_context import (
    BACKGROUNDS,
    VARIANTS,
    estimate_foreground,
    foreground_iou,
    synthesize,
)
from dsm_lightning.evaluation.plots import log_png, plot_confusion_matrix
from dsm_lightning.evaluation.retrieval import (
    encode_videos,
    evaluate_retrieval,
    extract_features,
    format_recall_table,
    neighbours_table,
    pool_view_features,
    recall_at_k,
    topk_neighbours,
)
from dsm_lightning.evaluation.scene_bias import (
    SceneBiasReport,
    format_table,
    plot_per_class,
    save_report_json,
    scene_bias_report,
)
from dsm_lightning.evaluation.scene_bias_probe import (
    predict_normal_and_static,
    run_scene_bias_probe,
)
from dsm_lightning.evaluation.synthesized import OutOfContextTests, synthesize_split
from dsm_lightning.evaluation.video_level import (
    contrasted_accuracy,
    make_static,
    per_class_accuracy,
    video_level_predictions,
)

__all__ = [
    "BACKGROUNDS",
    "OutOfContextTests",
    "SceneBiasReport",
    "VARIANTS",
    "aggregate_runs",
    "estimate_foreground",
    "findings",
    "foreground_iou",
    "rank_agreement",
    "synthesize",
    "synthesize_split",
    "contrasted_accuracy",
    "encode_videos",
    "evaluate_retrieval",
    "extract_features",
    "format_recall_table",
    "format_table",
    "grad_cam",
    "last_feature_map_layer",
    "log_png",
    "make_static",
    "neighbours_table",
    "per_class_accuracy",
    "plot_confusion_matrix",
    "plot_per_class",
    "pool_view_features",
    "predict_normal_and_static",
    "recall_at_k",
    "run_scene_bias_probe",
    "save_cam_grid",
    "save_report_json",
    "scene_bias_report",
    "topk_neighbours",
    "video_level_predictions",
]
