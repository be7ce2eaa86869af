"""Evaluation: the separation metrics (uSDR, BSSEval v4 exactly as museval computes it, fast), the
reference rows' estimators (mixture, oracle IRM) and per-track scores in museval's schema.
Imports `pipeline.names`, `pipeline.errors` and museval (for its reference backend).
"""
