"""Suggestions, one module per job: `install` (taggers), `run` (over images), `mappings` (labels and the
unmapped worklist), `review` (suggestions entering and leaving review), `learning` (thresholds from review).

Every prediction ends up in exactly one place: a pending TagSuggestion (mapped, aliases and
implications applied), the unmapped worklist (held until a moderator maps or ignores the label),
or nowhere because a mapping says ignore, the image already has the tag, or a human rejected the
same tag from the same model before.

Callers use `from suggestions import services` and the names below.
"""

from suggestions.services.install import (
    LABEL_FILES,
    MODEL_FILE,
    Labels,
    ModelInstallError,
    checked_thresholds,
    download_model,
    file_sha256,
    install_model,
    label_category,
    read_graph_shape,
    read_labels,
)
from suggestions.services.learning import (
    CONFIDENCE_LEVEL,
    TURN_OFF_BELOW,
    TagPrecision,
    ThresholdStep,
    apply_recommendations,
    apply_thresholds,
    label_thresholds,
    recommend_threshold,
    review_report,
    step_at,
    threshold_steps,
    wilson_bounds,
)
from suggestions.services.mappings import (
    MAPPING_ACTIONS,
    MAPPING_COLUMNS,
    WORKLIST_ACTIONS,
    MappingImportError,
    images_waiting,
    import_tag_mappings,
    label_sources,
    map_to_same_name,
    read_mapping_rows,
    remap_pending,
    resolve_labels,
    resolve_worklist,
    set_mapping,
    worklist,
    worklist_key,
    worklist_page,
)
from suggestions.services.review import (
    Candidate,
    create_suggestions,
    decide,
    review_images,
    review_queue,
    review_queue_page,
)
from suggestions.services.run import (
    RATING,
    STAGE,
    Result,
    active_models,
    category_key,
    images_to_tag,
    mcut_threshold,
    predict_images,
    select_labels,
    store_results,
    suggest_tags,
    tag_backlog,
    threshold_vector,
)

__all__ = [
    "CONFIDENCE_LEVEL", "LABEL_FILES", "MAPPING_ACTIONS", "MAPPING_COLUMNS", "MODEL_FILE", "RATING", "STAGE",
    "TURN_OFF_BELOW", "WORKLIST_ACTIONS", "Candidate", "Labels", "MappingImportError", "ModelInstallError", "Result",
    "TagPrecision", "ThresholdStep", "active_models", "apply_recommendations", "apply_thresholds", "category_key",
    "checked_thresholds", "create_suggestions", "decide", "download_model", "file_sha256", "images_to_tag",
    "images_waiting", "import_tag_mappings", "install_model", "label_category", "label_sources", "label_thresholds",
    "map_to_same_name", "mcut_threshold", "predict_images", "read_graph_shape", "read_labels", "read_mapping_rows",
    "recommend_threshold", "remap_pending", "resolve_labels", "resolve_worklist", "review_images", "review_queue",
    "review_queue_page", "review_report", "select_labels", "set_mapping", "step_at", "store_results", "suggest_tags",
    "tag_backlog", "threshold_steps", "threshold_vector", "wilson_bounds", "worklist", "worklist_key", "worklist_page",
]  # fmt: skip
