"""`sepcost separate`: the user's audio files through a trained variant, whatever their rate and channels.

Imports the inference core, the data package's audio I/O and `pipeline.checkpoint`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipeline.checkpoint import load_models
from pipeline.config.schema import EvalConfig
from pipeline.data.audio import resample, write_wav
from pipeline.errors import UserError
from pipeline.inference.separate import estimate


def separate_files(files: list[str], checkpoint, out_dir, cfg: EvalConfig, device="cpu") -> list:
    """`sepcost separate`: each wav or flac file into <out_dir>/<file name>/<target>.wav, the
    models on `device`.

    Any sample rate and mono or stereo: the audio is resampled to the model's rate and made stereo
    on the way in, and brought back to the file's rate and channel count on the way out.
    """
    models = load_models(checkpoint, device)
    model_rate = models[0].spec["sample_rate"]
    targets = [t for m in models for t in m.spec["targets"]]
    written = []
    for name in files:
        path = Path(name)
        try:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise UserError(f"{path}: unreadable audio (expected a wav or flac file: {err})") from None
        audio = audio.T
        channels = audio.shape[0]
        if channels not in (1, 2):
            raise UserError(f"{path}: {channels} channels, expected mono or stereo")
        if audio.shape[1] == 0:
            raise UserError(f"{path}: no audio samples")
        stereo = np.repeat(audio, 2, axis=0) if channels == 1 else audio
        estimates = estimate(models, torch.from_numpy(resample(stereo, rate, model_rate)), cfg, model_rate)
        for target, separated in zip(targets, estimates.numpy()):
            back = resample(separated, model_rate, rate)[:, : audio.shape[1]]
            back = np.pad(back, ((0, 0), (0, audio.shape[1] - back.shape[1])))
            if channels == 1:
                back = back.mean(axis=0, keepdims=True)
            target_path = Path(out_dir) / path.stem / f"{target}.wav"
            write_wav(target_path, back, rate, subtype="FLOAT")
            written.append(target_path)
        print(f"separate: {path} -> {Path(out_dir) / path.stem}/{{{','.join(targets)}}}.wav")
    return written
