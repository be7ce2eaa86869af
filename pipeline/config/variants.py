"""The replication's variants: one per row of its validation table, plus Open-Unmix's rows.

Each is its declared change to the base recipe (schema.py's defaults): a set of overrides of the
sections stft, model, train and eval, and nothing else. The names are those of
`reports/reference/paper_validation.csv`, so the report joins our rows with the published ones.
A params file with a `variants` mapping replaces this table (the CPU copy in params.yaml scales
the same changes to its sizes). Imports nothing.
"""
from __future__ import annotations

LARGE = {"n": 128, "r": 12}
ATTENTION_2_16 = {"attention_heads": 2, "attention_dim": 16}
# Open-Unmix as its authors train it, and the replication's training study of it.
UMX = {
    "stft": {"n_fft": 4096, "hop": 1024},
    "model": {"arch": "umx"},
    "train": {
        "loss": "mse_mag", "sampler": "random", "lr": 0.001, "lr_batch": 16, "batch_size": 16,
        "chunk_s": 6.0, "weight_decay": 0.00001, "scheduler": "plateau", "plateau_patience": 80,
        "patience": 140, "max_epochs": 1000,
        "epoch_items": 5504,  # 86 training tracks x 64 samples per track
    },
    "eval": {"wiener_iterations": 1},
}


def _umx(**changes) -> dict:
    """Open-Unmix with some of its sections changed (each given whole, as the overrides merge)."""
    return {**UMX, **changes}


PAPER_VARIANTS: dict[str, dict] = {
    "base": {},
    "accum_grad": {"train": {"accum_steps": 2}},
    "monitor_loss": {"train": {"monitor": "loss"}},
    "loss_time": {"train": {"loss": "t"}},
    "loss_stft": {"train": {"loss": "tf"}},
    "stft_4096": {"stft": {"n_fft": 4096, "hop": 1024}},
    "mask_mu2": {"model": {"bsrnn": {"mu": 2}}},
    "large": {"model": {"bsrnn": LARGE}},
    "large_patience30": {"model": {"bsrnn": LARGE}, "train": {"patience": 30}},
    "stereo_naive": {"model": {"bsrnn": {"stereo": "naive"}}},
    "stereo_naive_mu8": {"model": {"bsrnn": {"stereo": "naive", "mu": 8}}},
    "tac_tanh": {"model": {"bsrnn": {"stereo": "tac", "tac_activation": "tanh"}}},
    "tac_prelu": {"model": {"bsrnn": {"stereo": "tac", "tac_activation": "prelu"}}},
    "bscnn": {"model": {"bsrnn": {"time_layer": "conv", "band_layer": "conv", "band_split": "joint"}}},
    "attention_1_8": {"model": {"bsrnn": {"attention_heads": 1, "attention_dim": 8}}},
    "attention_2_16": {"model": {"bsrnn": ATTENTION_2_16}},
    "multihead_2": {"model": {"bsrnn": {"heads": 2}}},
    "silent_target": {"train": {"silent_source_p": 0.0, "silent_target_p": 0.1}},
    "no_sad_umx_aug": {"train": {"sampler": "random"}},
    "optimized_no_tac": {"model": {"bsrnn": {**LARGE, **ATTENTION_2_16}},
                         "train": {"sampler": "random", "patience": 30}},
    "optimized_tac": {"model": {"bsrnn": {**LARGE, **ATTENTION_2_16, "stereo": "tac", "tac_activation": "prelu"}},
                      "train": {"sampler": "random", "patience": 30}},
    "umx": UMX,
    "umx_hidden256": _umx(model={"arch": "umx", "umx": {"hidden": 256}}),
    "umx_unidirectional": _umx(model={"arch": "umx", "umx": {"bidirectional": False}}),
    "umx_batch32": _umx(train={**UMX["train"], "batch_size": 32, "lr_batch": 32}),
    "umx_samples_per_track32": _umx(train={**UMX["train"], "epoch_items": 2752}),  # 86 tracks x 32
}
