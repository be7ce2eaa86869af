"""Inference: whole tracks through trained models, in chunks, the same way for validation,
evaluation and `sepcost separate`. Imports `model`, the config schema, `pipeline.runtime` and,
for files, the data package's audio I/O and `pipeline.checkpoint`.
"""
