"""The data: the prepared data set's manifest and audio files, the built-in synthetic set and the
checks of a real MUSDB18(-HQ), source activity detection, and the training sampler.

Imports `pipeline.names`, `pipeline.paths`, `pipeline.errors`, `pipeline.atomic`, the config
schema and `pipeline.synth`.
"""
