"""The separation models: BSRNN and its variants, Open-Unmix, the STFT and the Wiener filter.

Pure torch, no I/O; built from a plain spec dict by `build_separator`. Never imports `pipeline`.
"""
from model.bands import band_widths
from model.bsrnn import BSRNN
from model.factory import VariantSeparator, build_separator, count_parameters
from model.stft import Stft
from model.umx import OpenUnmix, input_statistics
from model.wiener import wiener

__all__ = [
    "BSRNN",
    "OpenUnmix",
    "Stft",
    "VariantSeparator",
    "band_widths",
    "build_separator",
    "count_parameters",
    "input_statistics",
    "wiener",
]
