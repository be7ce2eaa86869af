"""Symmetric positive semi-definite block Toeplitz systems T x = d, several at once, in float64.

BSSEval's distortion filters solve such systems (the Gram matrix of the delayed references is
exactly block Toeplitz); a block Levinson recursion does it in O(L^2 m^3) operations and kilobytes,
where a dense solve needs O((L m)^3) and the whole matrix. Pure torch; imports nothing of the project.
"""
from __future__ import annotations

import math
import warnings

import scipy.fft
import torch

# Block Levinson solutions are refined (at most _MAX_REFINEMENTS steps) while their normwise
# backward error is above _BACKWARD_ERROR_MAX, and the system is solved densely if it stays above
# or the solution's gain |T| |x| / |d| exceeds _GAIN_MAX (about 1e3 for music); a warning says when
# even the dense solution's gain exceeds _GAIN_WARN (museval's own figures then depend on rounding).
# A dense LU solve reaches about 1e-17; unrefined errors of 3.5e-15 (a harmonic song) and 3.5e-11
# (panned mono stems) moved scores by 5e-8 and 1.4e-4 dB, so 1e-13 keeps them within about 1e-6 dB.
_MAX_REFINEMENTS = 3
_BACKWARD_ERROR_MAX = 1e-13
_GAIN_MAX = 1e8
_GAIN_WARN = 1e12


def solve_block_toeplitz(systems: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Solve T x = d for symmetric positive semi-definite block Toeplitz matrices T, several at once.

    systems: [(lags, rhs)], lags (batch, 2L-1, m, m) with lags[:, k + L - 1] = R(k) and
    R(-k) = R(k)^T, block (a, b) of T being R(b - a); rhs (batch, L, m, r). Same L for all, m and r
    may differ. Returns [x (batch, L, m, r)] float64.

    Block Levinson recursion on the system whitened by R(0) (`_whitening`), then iterative
    refinement against the exact product T x while the normwise backward error is above
    _BACKWARD_ERROR_MAX. The recursion is only trusted where the solution is of ordinary size
    (gain |T| |x| / |d| <= _GAIN_MAX: about 1e3 for music, where the filters are near identities);
    a nearly singular T (references nearly linearly dependent, e.g. band-limited far below the
    noise floor) makes it amplify rounding without bound, and then the dense LU solve museval
    itself uses is run instead.
    """
    whitening = [_whitening(lags) for lags, _ in systems]
    whitened = [_congruent(q, lags) for q, (lags, _) in zip(whitening, systems)]

    def levinson(indices: list[int], rhss: list[torch.Tensor]) -> list[torch.Tensor]:
        solved = _block_levinson([(whitened[i], whitening[i][:, None] @ d) for i, d in zip(indices, rhss)])
        return [whitening[i][:, None].transpose(2, 3) @ x for i, x in zip(indices, solved)]

    xs = levinson(list(range(len(systems))), [rhs for _, rhs in systems])
    quality = [_solution_quality(lags, x, rhs) for (lags, rhs), x in zip(systems, xs)]
    for _ in range(_MAX_REFINEMENTS):
        todo = [i for i, (error, gain) in enumerate(quality)
                if bool(((error > _BACKWARD_ERROR_MAX) & (gain <= _GAIN_MAX)).any())]
        if not todo:
            break
        residuals = [systems[i][1] - _toeplitz_matmul(systems[i][0], xs[i]) for i in todo]
        for i, dx in zip(todo, levinson(todo, residuals)):
            xs[i] = xs[i] + dx
            quality[i] = _solution_quality(systems[i][0], xs[i], systems[i][1])
    for (lags, rhs), x, (error, gain) in zip(systems, xs, quality):
        for b in ((error > _BACKWARD_ERROR_MAX) | ~(gain <= _GAIN_MAX)).nonzero().flatten().tolist():
            x[b] = _dense_solve(lags[b], rhs[b])
            _, gain_dense = _solution_quality(lags[b:b + 1], x[b:b + 1], rhs[b:b + 1])
            if not float(gain_dense[0]) <= _GAIN_WARN:
                warnings.warn(
                    "bsseval: the references' correlation matrix is nearly singular (references "
                    "nearly linearly dependent or band-limited far below their noise floor): "
                    "museval's scores for this track depend on rounding", RuntimeWarning)
    return xs


def _whitening(lags: torch.Tensor) -> torch.Tensor:
    """Q (batch, m, m) with Q R(0) Q^T = I (eigenvalues below 1e-15 of the largest taken as that):
    the recursion on the congruent system Q R(k) Q^T loses far less to rounding when R(0) is nearly
    singular (channels nearly proportional, as in panned mono stems: 3.5e-11 -> 3e-17 backward
    error), so that no refinement is needed."""
    r0 = lags[:, (lags.shape[1] - 1) // 2]
    values, vectors = torch.linalg.eigh(0.5 * (r0 + r0.transpose(1, 2)))
    floor = values.amax(dim=1, keepdim=True).clamp_min(torch.finfo(lags.dtype).tiny) * 1e-15
    return (vectors * values.clamp_min(floor).rsqrt()[:, None, :]).transpose(1, 2)


def _congruent(q: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
    """The lags of (I x Q) T (I x Q)^T: Q R(k) Q^T, block Toeplitz and symmetric as T."""
    return q[:, None] @ lags @ q[:, None].transpose(2, 3)


def _solution_quality(lags: torch.Tensor, x: torch.Tensor, rhs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per system (batch,), on the CPU: the normwise backward error |d - T x| / (|T| |x| + |d|) and
    the gain |T| |x| / |d| (max norms); inf where x is not finite."""
    residual = rhs - _toeplitz_matmul(lags, x)
    # |T|_inf <= the sum over all lags of the largest absolute row sum of R(k)
    t_norm = lags.abs().sum(dim=3).amax(dim=2).sum(dim=1)
    amax = lambda z: z.abs().flatten(1).amax(dim=1)  # noqa: E731
    error = amax(residual) / (t_norm * amax(x) + amax(rhs))
    gain = t_norm * amax(x) / amax(rhs)
    finite = torch.isfinite(error) & torch.isfinite(gain)
    return (torch.where(finite, error, math.inf).cpu(), torch.where(finite, gain, math.inf).cpu())


def _block_levinson(systems: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Block Levinson recursion for several systems at once (one loop over the block size n).

    With T_n the leading n x n blocks of T, each system keeps forward vectors f (T_n f = [I 0 .. 0]^T),
    backward vectors b (T_n b = [0 .. 0 I]^T) and the solution x (T_n x = d[:n]). As
    T_{n+1} [0; b] = [eps_b 0 .. I]^T and T_{n+1} [f; 0] = [I 0 .. eps_f]^T, the next ones are
    [b', f'] = [[0; b], [f; 0]] K^-1 with K = [[I, eps_f], [eps_b, I]], and x' = [x; 0] + b' (d_n - eps_x).
    One buffer per system holds, in block row k, [b[k - 1], f[k], x[k]], so that [[0; b], [f; 0]]
    and [f, x] are views and each step is a handful of matrix products.
    """
    taps = systems[0][1].shape[1]
    states = []
    for lags, rhs in systems:
        batch, _, m, _ = lags.shape
        r = rhs.shape[-1]
        kw = dict(dtype=lags.dtype, device=lags.device)
        rows = lags.permute(0, 2, 1, 3).contiguous()  # (batch, m, 2L-1, m): block rows, consecutive lags
        buf = torch.zeros((batch, taps + 1, m, 2 * m + r), **kw)  # rows k: [b[k-1], f[k], x[k]]
        k_mat = torch.eye(2 * m, **kw).repeat(batch, 1, 1)
        r0_inv = torch.linalg.inv_ex(lags[:, taps - 1])[0]  # singular: not finite, caught by the caller
        buf[:, 1, :, :m] = r0_inv
        buf[:, 0, :, m:2 * m] = r0_inv
        buf[:, 0, :, 2 * m:] = torch.matmul(r0_inv, rhs[:, 0])
        states.append((rows, buf, k_mat, rhs, batch, m, r))
    for n in range(1, taps):
        for rows, buf, k_mat, rhs, batch, m, r in states:
            before = rows[:, :, taps - 1 - n:taps - 1].reshape(batch, m, n * m)  # R(-n) ... R(-1)
            after = rows[:, :, taps:taps + n].reshape(batch, m, n * m)  # R(1) ... R(n)
            eps_fx = torch.matmul(before, buf[:, :n, :, m:].reshape(batch, n * m, m + r))  # [eps_f, eps_x]
            k_mat[:, :m, m:] = eps_fx[..., :m]
            k_mat[:, m:, :m] = torch.matmul(after, buf[:, 1:n + 1, :, :m].reshape(batch, n * m, m))  # eps_b
            extended = buf[:, :n + 1, :, :2 * m].reshape(batch, (n + 1) * m, 2 * m)  # [[0; b], [f; 0]]
            new = torch.matmul(extended, torch.linalg.inv_ex(k_mat)[0]).view(batch, n + 1, m, 2 * m)
            buf[:, 1:n + 2, :, :m] = new[..., :m]
            buf[:, :n + 1, :, m:2 * m] = new[..., m:]
            buf[:, :n + 1, :, 2 * m:].reshape(batch, (n + 1) * m, r).baddbmm_(
                new[..., :m].reshape(batch, (n + 1) * m, m), rhs[:, n] - eps_fx[..., m:])
    return [buf[:, :taps, :, 2 * m:].contiguous() for _, buf, _, _, _, m, _ in states]


def _toeplitz_matmul(lags: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """T x for block Toeplitz T (see `solve_block_toeplitz`): y_a = sum_b R(b - a) x_b, by FFT
    over the block index (a circular convolution of length >= 2L - 1 has no wrap-around)."""
    n_lags = lags.shape[1]
    taps = (n_lags + 1) // 2
    size = scipy.fft.next_fast_len(n_lags, real=True)
    # y_a = sum_b h[a - b] x_b with h[j] = R(-j): h[j] at j >= 0 is lags[L-1-j], at j < 0 wraps
    h = torch.zeros((lags.shape[0], size) + lags.shape[2:], dtype=lags.dtype, device=lags.device)
    h[:, :taps] = lags[:, :taps].flip(1)
    h[:, size - taps + 1:] = lags[:, taps:].flip(1)
    spec = torch.matmul(torch.fft.rfft(h, dim=1), torch.fft.rfft(x, n=size, dim=1))
    return torch.fft.irfft(spec, n=size, dim=1)[:, :taps]


def _dense_solve(lags: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """museval's dense solve (LU, least squares if exactly singular) of one system: (L, m, r)."""
    n_lags, m, _ = lags.shape
    taps = (n_lags + 1) // 2
    idx = torch.arange(taps, device=lags.device)
    dense = lags[idx[None, :] - idx[:, None] + taps - 1]  # (a, b, m, m) = R(b - a)
    dense = dense.permute(0, 2, 1, 3).reshape(taps * m, taps * m)
    rhs = rhs.reshape(taps * m, -1)
    try:
        x = torch.linalg.solve(dense, rhs)
    except RuntimeError:  # exactly singular: museval falls back to least squares
        x = torch.linalg.lstsq(dense.cpu(), rhs.cpu(), driver="gelsd").solution.to(lags.device)
    return x.reshape(taps, m, -1)
