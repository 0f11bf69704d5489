"""Training: the rate-distortion loop, its data pipeline, resumable state and DDP (``loop``).

    from imgcodec.train import TrainOptions, train
"""

from .loop import (
    METRIC_FIELDS,
    METRICS_FILE,
    OPTIMIZERS,
    PRECISIONS,
    QUANTIZATIONS,
    SCHEDULES,
    STATE_FILE,
    CropIndices,
    Plan,
    RandomCrops,
    Trainee,
    TrainOptions,
    build_trainee,
    cpu_has_bf16,
    crop_loader,
    distributed,
    finish,
    inference_model,
    load_images,
    load_state,
    make_optimizer,
    resolve_plan,
    resolve_precision,
    save_state,
    setup_device,
    ship_checkpoint,
    state_step,
    time_steps,
    train,
    train_step,
    validate,
    weights_digest,
)

__all__ = [
    "METRIC_FIELDS", "METRICS_FILE", "OPTIMIZERS", "PRECISIONS", "QUANTIZATIONS", "SCHEDULES", "STATE_FILE",
    "CropIndices", "Plan", "RandomCrops", "Trainee", "TrainOptions", "build_trainee", "cpu_has_bf16", "crop_loader",
    "distributed", "finish", "inference_model", "load_images", "load_state", "make_optimizer", "resolve_plan",
    "resolve_precision", "save_state", "setup_device", "ship_checkpoint", "state_step", "time_steps", "train", "train_step",
    "validate", "weights_digest",
]
