"""BSSEval v4 exactly as museval computes it (``museval.evaluate``, mode "v4"), fast.

``bss_eval_v4(references, estimates, sample_rate)`` returns museval's framewise SDR, ISR, SIR and SAR
(1 s windows and hops by default) for all targets evaluated together. ``backend="museval"`` calls
museval itself (the reference); ``backend="torch"`` (the default) is a vectorised float64
implementation of the same mathematics that runs on CPU or GPU. Tests hold it within 0.01 dB of
museval on every frame museval scores, with the same NaN frames.

The mathematics (museval 0.4.1, ``museval/metrics.py``), for references s_p, p = (target, channel),
estimates e_q, filter length L = 512, frames of W samples every H samples:

1. Whole-track distortion filters. G is the Gram matrix of all references delayed by 0..L-1
   samples (zero padded, so it is exactly block Toeplitz: block (a, b) is R(b - a) with
   R(k)_pq = sum_n s_p[n + k] s_q[n]); D holds the correlations of each estimate channel with the
   delayed references. For estimate target j, C_j = solve(G + eps I, D_j) (projection onto all
   references) and Cjj = solve(G_jj + eps I, D_jj) (projection onto reference j only, its own
   channels), eps = float64 machine epsilon.
2. Per frame t and target j, with the reference and estimate restricted to the frame (zero
   outside it) and every signal of length W + L - 1: s = s_j, Pj = s_j filtered by Cjj (full
   convolution), Pa = all references filtered by C_j; e_spat = Pj - s, e_interf = Pa - Pj,
   e_artif = e_j - Pa. Then SDR = 10 log10(|s|^2 / |e_spat + e_interf + e_artif|^2),
   ISR = 10 log10(|s|^2 / |e_spat|^2), SIR = 10 log10(|s + e_spat|^2 / |e_interf|^2),
   SAR = 10 log10(|s + e_spat + e_interf|^2 / |e_artif|^2); a zero denominator gives +inf.
3. A frame where any reference target or any estimate target is silent gives NaN for every target
   and metric. museval's "silent" is: the sum over channels is zero at every sample (so an exactly
   phase-inverted stereo signal counts as silent too); this module uses the same test.
4. Estimates longer than the references are truncated, shorter ones zero padded (museval's
   ``pad_or_truncate``). Frames: n_frames = (n - W) // H + 1, frame t covers [t H, t H + W).

How the fast path computes the same numbers (float64 throughout, torch, CPU or GPU):
- correlations (R and D) by overlap-save real FFTs of short blocks (4096 points) accumulated over
  the track in the frequency domain: one pass, one short inverse FFT, memory independent of the
  track length (museval: a complex 2M-point FFT per pair of signals);
- the 4096 x 4096 system (four stereo targets) and the four 1024 x 1024 ones are solved in one
  block Levinson recursion on their block Toeplitz structure (O(L^2 m^3) operations, kilobytes
  instead of dense matrices; museval: eight dense solves), whitened by the zero-lag correlations
  and refined against the exact Toeplitz product while its backward error could move a score
  (above 1e-13); where the references' correlation matrix
  is numerically singular the recursion amplifies rounding, and museval's dense LU solve is used
  instead (see `toeplitz.solve_block_toeplitz`);
- the framewise projections are products of frame spectra with filter spectra (every frame,
  target and channel of a chunk of frames at once; no Python loop over frames), and every energy
  comes from Parseval's identity on the zero-padded full convolutions (no inverse FFT); frames
  museval does not score (a silent target) are skipped, as museval skips them. With a single
  target both projections are computed alike, so e_interf = 0 and SIR = +inf, as in museval.
- on the CPU, torch runs on one thread per worker (see `_single_thread`), and up to
  min(torch.get_num_threads(), 4) Python threads take ranges of blocks and frames; every worker
  computes in bounded workspaces: about 130 MB working memory for a 30 s stereo four-target track
  at 44.1 kHz on 2 cores, nearly independent of the track length (museval: about 1 GB).

Deliberate differences from museval (documented, tested):
- bad input raises ``pipeline.errors.UserError`` with one line: references and estimates with
  different numbers of targets or channels, fewer samples than one window (museval would score the
  whole short signal as one frame), a silent reference or estimate target over the whole track
  (museval raises ValueError for both), NaN or inf samples (museval returns NaN or fails in the
  solver).

Where agreement stops: a figure museval computes from rounding errors cannot be reproduced by any
other implementation (museval does not reproduce it either when the targets are listed in another
order). Two cases: (a) an estimate within float32 rounding of the references' span, e.g. the
mixture as every estimate: e_artif is the mixture's float32 rounding and SAR is about 150 dB;
with 16-bit references (MUSDB18-HQ, the synthetic songs) both museval's and this SAR wander by
about 1e-3 to 0.1 dB, the other metrics agree to 1e-8 dB; (b) references band-limited far below
any noise floor (float signals steeply low-passed, without the quantisation noise of real audio)
while the estimate is not: the filters then amplify rounding by 1e6 or more, ISR and SAR become
rounding noise (museval gives ISR of -80 dB there and this path differs by dB), and where the
correlation matrix is numerically singular a RuntimeWarning says so.
"""
from __future__ import annotations

import concurrent.futures
import math
import warnings

import numpy as np
import scipy.fft
import torch

from pipeline.errors import UserError
from pipeline.evaluation.toeplitz import solve_block_toeplitz
from pipeline.names import BSSEVAL_SCORES, TARGETS

FILTERS_LEN = 512  # museval's default distortion-filter length (taps)

# Sizes of the work pieces, chosen for speed at a low peak memory (measured on 2 cores).
_CORR_FFT = 4096  # overlap-save block FFT length for the whole-track correlations
_CHUNK_BYTES = 6 * 2**20  # spectra held at once per worker in the correlation loop
_FRAME_BYTES = 6 * 2**20  # frame spectra (references and estimates) held at once per worker
_BAND_BYTES = 2**20  # each temporary per frequency band in the frame loop
_CHECK_SAMPLES = 2**16  # samples per chunk of the input checks
_MAX_WORKERS = 4  # CPU threads of the fast path (at most torch's thread count)


# ----------------------------------------------------------------------------------------- API
def bss_eval_v4(references, estimates, sample_rate: int, window_s: float = 1.0, hop_s: float = 1.0,
                backend: str = "torch", device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Framewise BSSEval v4 (museval ``evaluate(mode="v4")``, 512-tap filters over the whole track).

    references, estimates: (targets, channels, samples) float arrays (numpy or torch), targets in
    the order vocals, bass, drums, other; all targets are evaluated together, as museval requires.
    Estimates of another length are truncated or zero padded to the references' length (museval).
    Windows and hops are ``int(window_s * sample_rate)`` and ``int(hop_s * sample_rate)`` samples.
    Returns {"sdr", "isr", "sir", "sar"}: float64 arrays (targets, frames), NaN where museval
    gives NaN (frames where any reference or estimate target is silent).
    backend: "torch" (fast, default; float64 on `device`: "cpu" or a CUDA device, others such as
    "mps", which lack float64, run on the CPU) or "museval" (the reference).
    Raises UserError (one line) on bad input: see the module docstring.
    """
    if backend not in ("torch", "museval"):
        raise UserError(f"bsseval backend must be 'torch' or 'museval', got {backend!r}")
    device = _as_device(device) if backend == "torch" else torch.device("cpu")
    refs = _as_tensor(references, "references")
    ests = _as_tensor(estimates, "estimates")
    if refs.shape[:2] != ests.shape[:2]:
        raise UserError(
            f"references and estimates differ in shape: references (targets, channels, samples) = "
            f"{tuple(refs.shape)}, estimates = {tuple(ests.shape)}; targets and channels must match")
    window, hop = int(window_s * sample_rate), int(hop_s * sample_rate)
    if window < 1 or hop < 1:
        raise UserError(f"BSSEval window and hop must be at least one sample, got window_s={window_s}, "
                        f"hop_s={hop_s} at {sample_rate} Hz")
    n = refs.shape[-1]
    if n < window:
        raise UserError(f"references have {n} samples ({n / sample_rate:.3f} s), fewer than one "
                        f"BSSEval window of {window} samples ({window_s} s)")
    ests = _pad_or_truncate(ests, n)
    n_frames = (n - window) // hop + 1
    with _single_thread(refs.device):
        ref_track, ref_frames = _activity(refs, "references", window, hop, n_frames)
        est_track, est_frames = _activity(ests, "estimates", window, hop, n_frames)
    for name, active in (("reference", ref_track), ("estimate", est_track)):
        silent = np.flatnonzero(~active).tolist()
        if silent:
            raise UserError(f"{name} target {_target_label(silent[0], refs.shape[0])} is silent over the "
                            f"whole track (its channels sum to zero at every sample): BSSEval cannot "
                            f"score a silent {name}")
    if backend == "museval":
        return _museval_bss_eval(refs, ests, window, hop)
    scored = ref_frames.all(axis=0) & est_frames.all(axis=0)  # no target silent in the frame
    return _torch_bss_eval(refs, ests, window, hop, scored, device)


def median_over_frames(scores: dict) -> dict[str, np.ndarray]:
    """Median over frames ignoring NaN frames, per target (museval's per-track aggregate).

    scores: {metric: (targets, frames)} as returned by `bss_eval_v4`. Returns {metric: (targets,)}
    float64; a target with no scored frame gets NaN.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, as museval
        return {k: np.nanmedian(np.asarray(v, dtype=np.float64), axis=-1) for k, v in scores.items()}


# ------------------------------------------------------------------------------- input checks
def _target_label(index: int, n_targets: int) -> str:
    return f"{index} ({TARGETS[index]})" if n_targets == len(TARGETS) else str(index)


def _as_device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"bsseval device {device!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"bsseval device {str(device)!r} asked for, but torch sees no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        return torch.device("cpu")  # float64 and complex128 are needed (MPS has neither)
    return device


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            a = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise UserError(f"{name} must be an array (targets, channels, samples): {exc}") from None
        if a.dtype.kind not in "biuf":
            raise UserError(f"{name} must be a numeric array (targets, channels, samples), got dtype {a.dtype}")
        with warnings.catch_warnings():  # read-only arrays (np.load mmap): never written here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim != 3:
        raise UserError(f"{name} must have 3 dimensions (targets, channels, samples), got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise UserError(f"{name} must hold at least one target and one channel, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def _activity(x: torch.Tensor, name: str, window: int, hop: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """museval's silence test: is the sum over channels non-zero at some sample (computed in the
    input's dtype, as museval does), per target over the whole track (targets,) and per frame
    (targets, frames). Raises UserError on NaN or inf samples. Works in chunks."""
    track = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for a in range(0, x.shape[2], _CHECK_SAMPLES):
        chunk = x[..., a:a + _CHECK_SAMPLES]
        total = chunk.sum(dim=1)
        # NaN and inf propagate to the sum (a finite sum proves every sample finite)
        if not math.isfinite(float(total.sum(dtype=torch.float64))) and not bool(torch.isfinite(chunk).all()):
            raise UserError(f"{name} contain NaN or inf samples")
        track |= (total != 0).any(dim=1)
    frames = torch.empty((x.shape[0], n_frames), dtype=torch.bool, device=x.device)
    per_chunk = max(1, _CHECK_SAMPLES // hop)
    for t0 in range(0, n_frames, per_chunk):
        t1 = min(n_frames, t0 + per_chunk)
        total = x[..., t0 * hop:(t1 - 1) * hop + window].sum(dim=1)
        frames[:, t0:t1] = (total != 0).unfold(1, window, hop).any(dim=2)
    return track.cpu().numpy(), frames.cpu().numpy()


def _pad_or_truncate(ests: torch.Tensor, n: int) -> torch.Tensor:
    """museval.pad_or_truncate: cut estimates to n samples or pad their end with zeros."""
    if ests.shape[-1] > n:
        return ests[..., :n]
    if ests.shape[-1] < n:
        return torch.nn.functional.pad(ests, (0, n - ests.shape[-1]))
    return ests


# ------------------------------------------------------------------------------ museval backend
def _museval_bss_eval(refs: torch.Tensor, ests: torch.Tensor, window: int, hop: int) -> dict[str, np.ndarray]:
    import museval.metrics

    # museval's layout is (targets, samples, channels); evaluate() = pad_or_truncate + this call
    sdr, isr, sir, sar, _ = museval.metrics.bss_eval(
        refs.cpu().numpy().transpose(0, 2, 1), ests.cpu().numpy().transpose(0, 2, 1),
        window=window, hop=hop, compute_permutation=False, filters_len=FILTERS_LEN,
        framewise_filters=False, bsseval_sources_version=False)
    return {"sdr": np.asarray(sdr, dtype=np.float64), "isr": np.asarray(isr, dtype=np.float64),
            "sir": np.asarray(sir, dtype=np.float64), "sar": np.asarray(sar, dtype=np.float64)}


# -------------------------------------------------------------------------------- torch backend
def _torch_bss_eval(refs: torch.Tensor, ests: torch.Tensor, window: int, hop: int, scored: np.ndarray,
                    device: torch.device) -> dict[str, np.ndarray]:
    """The fast path: (targets, channels, samples) inputs of equal length -> {metric: (targets,
    frames)}, computed on the `scored` frames (frames,) bool, NaN on the others."""
    # CPU: a few Python threads, each on one torch thread, take ranges of blocks and frames
    workers = max(1, min(torch.get_num_threads(), _MAX_WORKERS)) if device.type == "cpu" else 1
    with _single_thread(device):
        return _fast_scores(refs, ests, window, hop, scored, device, workers)


def _fast_scores(refs: torch.Tensor, ests: torch.Tensor, window: int, hop: int, scored: np.ndarray,
                 device: torch.device, workers: int) -> dict[str, np.ndarray]:
    n_src, n_chan, n = refs.shape
    m = n_src * n_chan
    taps = FILTERS_LEN
    refs = refs.reshape(m, n)  # rows p = (target, channel)
    ests = ests.reshape(m, n)

    # 1. whole-track correlations: corr[k + L - 1, p, q] = sum_n ref_p[n + k] y_q[n], y = refs, ests
    corr = _correlations(refs, ests, taps, device, workers)
    lags_pos = corr[taps - 1:, :, :m]  # R(k), k = 0..L-1
    # R(-k) = R(k)^T exactly, as museval builds G symmetric; R(0) carries museval's + eps I
    eps_eye = torch.finfo(torch.float64).eps * torch.eye(m, dtype=torch.float64, device=device)
    r0 = 0.5 * (lags_pos[0] + lags_pos[0].T) + eps_eye
    lags = torch.cat([lags_pos[1:].flip(0).transpose(1, 2), r0[None], lags_pos[1:]])  # (2L-1, m, m)
    rhs = corr[:taps, :, m:].flip(0)  # d_a[p, q] = sum_n ref_p[n - a] est_q[n], a = 0..L-1
    del corr

    # 2. filters: C_j for all references (one system, every estimate row a right-hand side) and
    # Cjj for the target's own reference (its reference channels, its estimate's channels)
    own_lags = torch.stack([lags[:, j * n_chan:(j + 1) * n_chan, j * n_chan:(j + 1) * n_chan] for j in range(n_src)])
    own_rhs = torch.stack([rhs[:, j * n_chan:(j + 1) * n_chan, j * n_chan:(j + 1) * n_chan] for j in range(n_src)])
    all_refs, own_ref = solve_block_toeplitz([(lags[None], rhs[None]), (own_lags, own_rhs)])
    # 3. framewise decompositions in the frequency domain
    return _frame_scores(refs, ests, all_refs[0], own_ref, n_src, window, hop, scored, device, workers)


def _frame_scores(refs: torch.Tensor, ests: torch.Tensor, filters: torch.Tensor, own_filters: torch.Tensor,
                  n_src: int, window: int, hop: int, scored: np.ndarray, device: torch.device,
                  workers: int) -> dict[str, np.ndarray]:
    """museval's per-frame decomposition and criteria for every frame and target.

    refs, ests: (m, n) rows (target, channel); filters: (L, m, m) C, tap a, reference row p,
    estimate row q; own_filters: (targets, L, channels, channels) Cjj. Each frame's signals are
    transformed with an FFT long enough for the full convolutions (W + L - 1 samples), projected
    per frequency, and every energy is summed over frequencies with Parseval's weights. `workers`
    threads take contiguous ranges of frames.
    """
    m, _ = refs.shape
    n_chan = m // n_src
    taps = filters.shape[0]
    n_fft = scipy.fft.next_fast_len(window + taps - 1, real=True)
    n_freq = n_fft // 2 + 1
    kw = dict(dtype=torch.complex128, device=device)
    # filter spectra, frequency-major for the per-frequency products; one reference row at a time
    spec_all = torch.empty((n_freq, m, m), **kw)  # (F, p, q)
    padded = torch.zeros((max(m, n_chan * n_chan), n_fft), dtype=torch.float64, device=device)
    for p in range(m):
        padded[:m, :taps] = filters[:, p].T
        spec_all[:, p] = torch.fft.rfft(padded[:m]).T
    spec_own = torch.empty((n_freq, n_src, n_chan, n_chan), **kw)  # (F, target, c_in, c_out)
    for j in range(n_src):
        padded[:n_chan * n_chan, :taps] = own_filters[j].reshape(taps, -1).T
        spec_own[:, j] = torch.fft.rfft(padded[:n_chan * n_chan]).T.reshape(n_freq, n_chan, n_chan)
    weights = torch.full((n_freq,), 2.0 / n_fft, dtype=torch.float64, device=device)  # Parseval
    weights[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weights[-1] = 1.0 / n_fft
    out = {k: np.full((n_src, scored.size), np.nan) for k in BSSEVAL_SCORES}
    frames = np.flatnonzero(scored)  # museval skips the others (NaN): so does this path

    def frame_range(first: int, stop: int) -> None:  # scored frames first..stop-1, own workspaces
        for a, b in _runs(frames[first:stop]):
            _frame_range(refs, ests, spec_all, spec_own, weights, out, a, b, window, hop, n_fft)

    _in_parallel(frame_range, frames.size, workers)
    return out


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Increasing indices as [(first, stop)] ranges of consecutive ones."""
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    return [(int(run[0]), int(run[-1]) + 1) for run in np.split(indices, breaks)]


def _frame_range(refs: torch.Tensor, ests: torch.Tensor, spec_all: torch.Tensor, spec_own: torch.Tensor,
                 weights: torch.Tensor, out: dict[str, np.ndarray], first: int, stop: int, window: int,
                 hop: int, n_fft: int) -> None:
    """Scores of frames first .. stop - 1 into `out` (see `_frame_scores`)."""
    m = refs.shape[0]
    n_freq, n_src, n_chan, _ = spec_own.shape
    device = spec_all.device
    kw = dict(dtype=torch.complex128, device=device)
    per_chunk = min(stop - first, max(1, _FRAME_BYTES // (16 * n_freq * 2 * m)))
    step = max(1, _BAND_BYTES // (16 * per_chunk * m))
    # workspaces reused chunk after chunk and band after band
    padded = torch.zeros((m, per_chunk, n_fft), dtype=torch.float64, device=device)  # tails stay 0
    band_bufs = torch.empty((6, step * per_chunk * m), **kw)
    power_buf = torch.empty((step * per_chunk * m * 2,), dtype=torch.float64, device=device)
    for t0 in range(first, stop, per_chunk):
        t1 = min(stop, t0 + per_chunk)
        t = t1 - t0
        span = slice(t0 * hop, (t1 - 1) * hop + window)
        frames = padded[:, :t]
        frames[..., :window] = refs[:, span].unfold(1, window, hop)  # (m, T, W) -> float64
        energy_s = torch.linalg.vector_norm(frames, dim=2).square().T  # (T, m)
        spec_s = torch.fft.rfft(frames)  # (m, T, F)
        frames[..., :window] = ests[:, span].unfold(1, window, hop)
        spec_e = torch.fft.rfft(frames)
        sums = torch.zeros((6, t, m), dtype=torch.float64, device=device)
        for f0 in range(0, n_freq, step):  # frequency bands: small temporaries
            fb = min(step, n_freq - f0)
            band = slice(f0, f0 + fb)
            s, e, p_all, p_own, diff, tmp = (b[:fb * t * m].view(fb, t, m) for b in band_bufs)
            power = power_buf[:fb * t * m * 2].view(fb, -1)
            s.copy_(spec_s[:, :, band].permute(2, 1, 0))  # (Fb, T, m)
            e.copy_(spec_e[:, :, band].permute(2, 1, 0))
            if n_src > 1:
                torch.matmul(s, spec_all[band], out=p_all)  # projection on all references
            s4, p4, own = s.view(fb, t, n_src, n_chan), p_own.view(fb, t, n_src, n_chan), spec_own[band, None]
            torch.mul(s4[..., 0:1], own[..., 0, :], out=p4)  # projection on the target's own reference
            for c in range(1, n_chan):
                torch.mul(s4[..., c:c + 1], own[..., c, :], out=tmp.view_as(p4))
                p4 += tmp.view_as(p4)
            if n_src == 1:  # one reference: museval computes both projections alike, e_interf = 0
                p_all.copy_(p_own)
            w = weights[band]
            # 0: e_spat + e_interf + e_artif = e - s, 1: e_spat, 2: s + e_spat, 3: e_interf,
            # 4: s + e_spat + e_interf, 5: e_artif
            for i, (a, b) in enumerate(((e, s), (p_own, s), (p_own, None), (p_all, p_own), (p_all, None), (e, p_all))):
                z = a if b is None else torch.sub(a, b, out=diff)
                torch.square(torch.view_as_real(z).reshape(fb, -1), out=power)
                sums[i] += torch.matmul(w, power).view(t, m, 2).sum(dim=2)  # Parseval: sum over time
        del spec_s, spec_e
        e_diff, e_spat, e_own, e_interf, e_all, e_artif = (
            x.reshape(-1, n_src, n_chan).sum(dim=2).T.cpu().numpy() for x in sums)  # (targets, T)
        e_true = energy_s.reshape(-1, n_src, n_chan).sum(dim=2).T.cpu().numpy()
        out["sdr"][:, t0:t1] = _safe_db(e_true, e_diff)
        out["isr"][:, t0:t1] = _safe_db(e_true, e_spat)
        out["sir"][:, t0:t1] = _safe_db(e_own, e_interf)
        out["sar"][:, t0:t1] = _safe_db(e_all, e_artif)


def _safe_db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """museval's _safe_db: 10 log10(num / den), +inf where den == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(num / den)
    return np.where(den == 0, np.inf, db)


def _correlations(refs: torch.Tensor, ests: torch.Tensor, taps: int, device: torch.device,
                  workers: int = 1) -> torch.Tensor:
    """Short-lag cross-correlations of every reference row with every reference and estimate row.

    refs, ests: (m, n). Returns (2 taps - 1, m, 2m) float64: [k + taps - 1, p, q] =
    sum_n refs[p, n + k] y[q, n] for |k| < taps, y = refs rows then ests rows (zero outside 0..n-1).
    Overlap-save: blocks y[:, b B:(b+1) B] against refs[:, b B - (taps-1): (b+1) B + taps - 1],
    correlated circularly over M = B + 2 (taps - 1) points (no wrap-around for those lags) and summed
    in the frequency domain, so one short inverse FFT per pair. `workers` threads take contiguous
    ranges of blocks.
    """
    m, n = refs.shape
    size = max(_CORR_FFT, scipy.fft.next_fast_len(4 * taps, real=True))
    size = min(size, scipy.fft.next_fast_len(n + 2 * (taps - 1), real=True))
    block = size - 2 * (taps - 1)
    sums = []

    def block_range(first: int, stop: int) -> None:
        sums.append(_correlation_range(refs, ests, taps, device, size, first, stop))

    _in_parallel(block_range, math.ceil(n / block), workers)
    acc = sums[0]
    for other in sums[1:]:
        acc += other
    corr = torch.fft.irfft(acc.conj_physical_(), n=size, dim=0)  # (M, m, 2m): circular lag k + taps - 1
    return corr[:2 * taps - 1].contiguous()


def _correlation_range(refs: torch.Tensor, ests: torch.Tensor, taps: int, device: torch.device, size: int,
                       first: int, stop: int) -> torch.Tensor:
    """Blocks first .. stop - 1 of `_correlations`: the sum over them of conj(X_p) Y_q, (F, m, 2m)."""
    m, n = refs.shape
    block = size - 2 * (taps - 1)
    n_freq = size // 2 + 1
    per_chunk = min(stop - first, max(1, _CHUNK_BYTES // (16 * n_freq * 3 * m)))
    kw = dict(dtype=torch.float64, device=device)
    # workspaces reused chunk after chunk: signals (zero padded, float64) and frequency-major spectra
    ext = torch.zeros((m, per_chunk * block + 2 * (taps - 1)), **kw)  # references around the blocks
    plain = torch.zeros((2 * m, per_chunk, size), **kw)  # blocks of references and estimates, padded
    spec_x = torch.empty((n_freq, per_chunk, m), dtype=torch.complex128, device=device)
    spec_y = torch.empty((n_freq, per_chunk, 2 * m), dtype=torch.complex128, device=device)
    acc = torch.zeros((n_freq, m, 2 * m), dtype=torch.complex128, device=device)
    for b0 in range(first, stop, per_chunk):
        b1 = min(stop, b0 + per_chunk)
        k = b1 - b0
        # references around the blocks: samples b0 B - (taps-1) ... b1 B + taps - 1, zero outside
        lo, hi = b0 * block - (taps - 1), b1 * block + taps - 1
        ext.zero_()
        ext[:, max(lo, 0) - lo:min(hi, n) - lo] = refs[:, max(lo, 0):min(hi, n)]
        windows = ext[:, :k * block + 2 * (taps - 1)].unfold(1, size, block)  # (m, k, M)
        spec_x[:, :k].copy_(torch.fft.rfft(windows).permute(2, 1, 0))
        end = min(b1 * block, n) - b0 * block
        if end < k * block:
            plain.zero_()
        for rows, signals in ((slice(0, m), refs), (slice(m, 2 * m), ests)):
            _fill_blocks(plain[rows], signals[:, b0 * block:b0 * block + end], block)
        spec_y[:, :k].copy_(torch.fft.rfft(plain[:, :k]).permute(2, 1, 0))
        acc.baddbmm_(spec_x[:, :k].mH, spec_y[:, :k])  # sum over blocks of conj(X_p) Y_q
    return acc


def _in_parallel(work, n_items: int, workers: int) -> None:
    """work(first, stop) over `workers` contiguous ranges of range(n_items), in threads (torch
    releases the GIL in its kernels); exceptions propagate."""
    workers = max(1, min(workers, n_items))
    bounds = [n_items * i // workers for i in range(workers + 1)]
    if workers == 1:
        work(0, n_items)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
            future.result()


def _fill_blocks(dst: torch.Tensor, src: torch.Tensor, block: int) -> None:
    """dst[:, b, :block] = src[:, b block:(b + 1) block] for the blocks src covers (the last one
    possibly partial); dst: (rows, blocks, >= block), src: (rows, samples)."""
    full, rest = divmod(src.shape[1], block)
    if full:
        dst[:, :full, :block] = src[:, :full * block].reshape(src.shape[0], full, block)
    if rest:
        dst[:, full, :rest] = src[:, full * block:]


class _single_thread:
    """Run torch on one CPU thread inside; no effect for other devices. The fast path's operations
    are small (8 x 8 blocks, short FFTs): thread hand-offs cost more than they give, far more on a
    loaded machine, and torch's multithreaded CPU FFT leaves a copy of its output in each worker
    thread's heap. Parallelism belongs across tracks (processes), not inside one."""

    def __init__(self, device: torch.device):
        self.cpu = device.type == "cpu"

    def __enter__(self):
        if self.cpu:
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.cpu:
            torch.set_num_threads(self.threads)
