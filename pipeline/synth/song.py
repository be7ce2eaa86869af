"""A whole song: its plan, the four parts, the room, the levels and the mix.

Every element is panned in its part; vocals, drums and other get a small stereo room reverb here,
the bass only its own early reflections. Stems are levelled within 4.5 dB of each other, the voice
on top (LEVEL_RANGES_DB), and scaled together so that the mixture stays within [-1, 1]. The plan,
each part and the mix draw from their own random streams, all spawned from the song's seed.
"""
from __future__ import annotations

import numpy as np

from pipeline.names import TARGETS
from pipeline.synth import dsp
from pipeline.synth.arrangement import gate, make_plan
from pipeline.synth.bass import bass
from pipeline.synth.drums import drums
from pipeline.synth.other import other
from pipeline.synth.vocals import vocals

LEVEL_RANGES_DB = {"vocals": (0.0, 2.0)}  # the other stems: -2.5 to +0.5 dB


def render_song(seed: int, sample_rate: int, duration_s: float) -> dict[str, np.ndarray]:
    """Render one song: the four stems (`pipeline.names.TARGETS`, in that order), each float32
    (2, round(duration_s * sample_rate)).

    Deterministic for `seed` (a non-negative integer). Each stem's RMS over the song lies in its
    range of LEVEL_RANGES_DB around a common level (within 4.5 dB of each other, the voice on
    top), and all stems are scaled alike so that the mixture's peak is at most
    0.85 (the sum stays within [-1, 1], also after rounding every stem to 16 bits).
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
    n = int(round(duration_s * sample_rate))
    if n < 1:
        raise ValueError(f"duration_s must give at least one sample, got {duration_s}")
    sr = int(sample_rate)

    seeds = np.random.SeedSequence([int(seed), 0x53_59_4E_54]).spawn(6)
    plan_rng, drum_rng, bass_rng, voc_rng, oth_rng, mix_rng = (np.random.default_rng(s) for s in seeds)
    plan = make_plan(plan_rng, sr, n)
    parts = {
        "vocals": lambda: vocals(plan, voc_rng),
        "bass": lambda: bass(plan, bass_rng),
        "drums": lambda: drums(plan, drum_rng),
        "other": lambda: other(plan, oth_rng),
    }
    # The reverb runs at half the rate when that still covers its band (its tail is damped < 9 kHz).
    down = 2 if sr >= 32000 else 1
    ir = dsp.reverb_ir(mix_rng, sr // down)
    wet = {"vocals": mix_rng.uniform(0.15, 0.3), "bass": 0.0,  # the bass stays dry, as in most mixes
           "drums": mix_rng.uniform(0.05, 0.15), "other": mix_rng.uniform(0.15, 0.3)}
    # dB around a common level; the lead voice sits on top of the mix, as in most songs.
    offsets = {stem: mix_rng.uniform(*LEVEL_RANGES_DB.get(stem, (-2.5, 0.5))) for stem in TARGETS}

    stems = {}
    for stem in TARGETS:  # one part at a time, so memory holds one part's work at once
        x = parts[stem]()
        rms = dsp.rms(x)
        if rms > 0:
            x /= rms
            if wet[stem] > 0:
                x += wet[stem] * dsp.reverb(x.mean(axis=0), ir, down)
            x *= gate(plan, plan.silences.get(stem, []) + (plan.vocal_off if stem == "vocals" else []))
            rms = dsp.rms(x)
            if rms > 0:
                x *= 10 ** (offsets[stem] / 20) / rms
        stems[stem] = x
    peak = 0.0
    for sl in dsp.blocks(n):
        peak = max(peak, float(np.max(np.abs(sum(s[:, sl].astype(np.float64) for s in stems.values())))))
    scale = mix_rng.uniform(0.5, 0.85) / peak if peak > 0 else 1.0
    for x in stems.values():
        x *= scale
    return stems
