"""Training: the replication's recipe (loss, optimiser, schedule, early stopping), the models
trained side by side, validation on whole tracks, and what decides whether a checkpoint may be
resumed. Imports `model`, the config schema, the data package's sampler, the inference core,
the metrics, `pipeline.runtime`, `pipeline.specs` and `pipeline.sources`.
"""
