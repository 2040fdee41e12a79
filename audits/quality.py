"""Image-quality audits: BRISQUE, sharpness, blur, exposure, contrast, information, colour, size.

Why this module exists: a face photo that is blurred, black, washed out, grayscale or a thumbnail
carries little of the signal an age/gender model needs, and a production pipeline must be able to refuse
it with a reason ("too dark; blurry") before trusting a prediction. Everything here works on one decoded
image (OpenCV BGR uint8) at a time, except BRISQUE, which is batched.

Conventions (shared with the other audits): per audit, a raw measurement (`laplacian_var`), a
normalised score in 0..1 where LOWER means WORSE (`sharpness_score`), and a flag (`is_blurry`) whose
threshold is recorded. Thresholds default to robust statistics of the audited dataset itself
(median -/+ k x 1.4826 x MAD, one-sided, on a log scale where the measure spans decades), can be
overridden, and can be saved to / loaded from JSON so that `curate predict` judges single photos with
the thresholds of the training set.

BRISQUE: piq's implementation (`piq.brisque`, run one image at a time, single-threaded) is the
reference; `brisque_batch` reproduces its pixel maps bit for bit and, on the machines we measured, its
scores too, ~9x faster per process, because (1) the SVR weights and the gamma look-up tables are built
once per process instead of once per call, and piq itself is not imported in workers (its import alone
costs ~4 s of CPU); (2) the Gaussian 7x7 filter runs as one depthwise oneDNN convolution over a
batch, which accumulates the taps in exactly the order of piq's per-image `conv2d` (row-major fused
multiply-adds; at the first scale piq's luma is a channel-strided view for which oneDNN sums column by
column, reproduced by filtering the transposed image; separable or OpenCV filters do not match, and
BRISQUE is so sensitive to rounding in flat regions that they drift by up to 1 %); (3) the
MATLAB-style bicubic resize multiplies strided views instead of padding in Python loops and `unfold`,
but sums the very same product tensor the same way; (4) no rolled copies, masks or bool->float casts
in the neighbour statistics. Bit-identity depends on oneDNN's kernels (checked here: torch 2.14,
AVX-512); `tests/test_audits_quality.py` asserts the issue's bound, relative difference < 1e-3.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd

QUALITY_VERSION = "quality-1"
MIN_SIDE = 16  # below this an image gets status "too small (WxH)" and no audit beyond its size
MAD_TO_SIGMA = 1.4826

BRISQUE_URL = "https://github.com/photosynthesis-team/piq/releases/download/v0.4.0/brisque_svm_weights.pt"
# Largest batch handed to torch at once, in pixels: 16 UTKFace crops amortise torch's per-operation
# overhead; bigger batches only add memory traffic. (Audit workers also raise glibc's mmap threshold,
# see audits.runner: otherwise every 2.5 MB intermediate is a fresh mmap() with ~600 page faults.)
BRISQUE_BATCH_PIXELS = 16 * 200 * 200
MIN_BRISQUE_SIDE = 10  # piq's symmetric padding of the bicubic resize needs this many pixels

# Raw measurements computed by `measure_quality` (BRISQUE comes from `brisque_batch`).
RAW_COLUMNS = [
    "width", "height", "aspect", "brisque", "laplacian_var", "fft_blur", "brightness_p5",
    "brightness_p50", "brightness_p95", "contrast", "entropy", "chroma",
]
SCORE_COLUMNS = [
    "brisque_score", "sharpness_score", "fft_blur_score", "dark_score", "overexposed_score",
    "contrast_score", "information_score", "color_score",
]
FLAG_COLUMNS = [
    "is_blurry", "is_high_brisque", "is_dark", "is_overexposed", "is_low_contrast",
    "is_low_information", "is_grayscale", "is_odd_size",
]
# Words used in `quality_reasons`, per flag.
REASONS = {
    "is_blurry": "blurry",
    "is_high_brisque": "poor BRISQUE quality",
    "is_dark": "too dark",
    "is_overexposed": "over-exposed",
    "is_low_contrast": "low contrast",
    "is_low_information": "low information",
    "is_grayscale": "grayscale",
    "is_odd_size": "odd size",
}


# --------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------
@dataclass
class QualityThresholds:
    """Flag thresholds on the raw measurements; an image is flagged when it falls on the bad side.

    Why a dataclass with JSON I/O: thresholds derived from one dataset (robust statistics of the
    training set) must be reusable verbatim elsewhere, e.g. by `curate predict` on single photos.
    """

    # Defaults: the robust fences (k=3, see K_SCALE) of the full UTKFace set (23,708 images), rounded.
    laplacian_var_min: float = 5.6      # is_blurry: Laplacian variance below this (fence on log10)
    brisque_max: float = 84.7           # is_high_brisque: BRISQUE above this
    brightness_p95_max_dark: float = 106.6  # is_dark: even the brightest 5 % are darker than this
    brightness_p5_min_over: float = 123.0   # is_overexposed: even the darkest 5 % are brighter than this
    contrast_min: float = 10.9          # is_low_contrast: std of gray levels below this
    entropy_min: float = 6.44           # is_low_information: gray-level entropy (bits) below this
    chroma_max_gray: float = 3.0        # is_grayscale: mean (max-min channel) below this (absolute)
    min_side: float = 100.0             # is_odd_size: shorter side below this ...
    aspect_expected: float = 1.0        # ... or width/height off the dataset's typical aspect
    aspect_tolerance: float = 0.1       # by more than this fraction
    source: str = "built-in defaults (robust statistics of the full UTKFace set)"
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain dict, for JSON sidecars (why: metadata must say which threshold made each flag)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QualityThresholds":
        """Build from a dict; accepts a sidecar dict holding a `quality_thresholds` key too."""
        if "quality_thresholds" in d:
            d = d["quality_thresholds"]
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown quality threshold(s): {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in d.items()})

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, so another process (predict) applies exactly these thresholds."""
        from core.atomic import write_text

        write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "QualityThresholds":
        """Read thresholds from JSON written by `save` or from an audit sidecar (`*.meta.json`)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "QualityThresholds":
        """Copy with some values replaced (config overrides win over dataset statistics)."""
        if not overrides:
            return self
        d = self.to_dict()
        for k, v in overrides.items():
            if k not in d or k in ("source", "details"):
                raise ValueError(f"unknown quality threshold: {k}")
            d[k] = float(v)
        d["source"] = f"{self.source}; overridden: {', '.join(sorted(overrides))}"
        return QualityThresholds.from_dict(d)


DEFAULT_THRESHOLDS = QualityThresholds()

# Per-threshold multiplier of k. Sharpness: the low tail of log10(Laplacian variance) is cut off by
# the uint8 quantisation floor (~2: even a sigma-3 Gaussian blur of a 200x200 crop keeps ~2-3), so a
# 3-MAD fence sits on the floor and flags nothing; 2 MADs (x 2/3) lands at ~6x below the median,
# where UTKFace crops are visibly blurred (0.4 % of the set).
K_SCALE = {"laplacian_var_min": 2.0 / 3.0}


def _robust_fence(values: np.ndarray, k: float, side: str, log: bool = False,
                  fallback_pct: float = 1.0) -> tuple[float, dict]:
    """One-sided outlier fence median -/+ k*1.4826*MAD (log10 scale if `log`).

    Why robust statistics: the fence adapts to the dataset (a dim webcam set is not "too dark"
    everywhere), and median/MAD are not dragged by the very outliers we want to find. When MAD is
    zero (a degenerate distribution) we fall back to a percentile.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if log:
        v = np.log10(np.maximum(v, 1e-12))
    if v.size == 0:
        return float("nan"), {"n": 0}
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med)))
    if mad > 0:
        fence = med - k * MAD_TO_SIGMA * mad if side == "low" else med + k * MAD_TO_SIGMA * mad
        how = "median-MAD"
    else:
        fence = float(np.percentile(v, fallback_pct if side == "low" else 100 - fallback_pct))
        how = f"percentile {fallback_pct}"
    info = {"median": med, "mad": mad, "k": k, "side": side, "log10": log, "method": how, "n": int(v.size)}
    return (10 ** fence if log else fence), info


def compute_thresholds(df: pd.DataFrame, k: float = 3.0,
                       overrides: Mapping[str, Any] | None = None,
                       base: QualityThresholds = DEFAULT_THRESHOLDS) -> QualityThresholds:
    """Thresholds from robust statistics of the audited images themselves (rows with status "ok").

    Why: what counts as "too dark" or "blurry" depends on the dataset; fences at k robust standard
    deviations from the median flag the images that are outliers *for this dataset*. The grayscale
    threshold stays absolute (grayscale is a property, not a degree). `overrides` (from config) win.
    Too few images (< 30) keep `base` (the UTKFace defaults), since statistics would be noise.
    """
    ok = df[df["status"] == "ok"] if "status" in df else df
    if len(ok) < 30:
        t = QualityThresholds(**{**base.to_dict(), "source": f"{base.source} (only {len(ok)} ok images)"})
        return t.with_overrides(overrides)
    details: dict[str, Any] = {}
    vals: dict[str, float] = {}
    specs = [
        ("laplacian_var_min", "laplacian_var", "low", True),
        ("brisque_max", "brisque", "high", False),
        ("brightness_p95_max_dark", "brightness_p95", "low", False),
        ("brightness_p5_min_over", "brightness_p5", "high", False),
        ("contrast_min", "contrast", "low", False),
        ("entropy_min", "entropy", "low", False),
    ]
    for name, col, side, log in specs:
        fence, info = _robust_fence(ok[col].to_numpy(), k * K_SCALE.get(name, 1.0), side, log=log)
        vals[name] = fence if math.isfinite(fence) else getattr(base, name)
        details[name] = {"column": col, **info}
    sides = np.minimum(ok["width"], ok["height"]).to_numpy(dtype=np.float64)
    aspects = ok["aspect"].to_numpy(dtype=np.float64)
    vals["min_side"] = float(0.5 * np.median(sides))
    vals["aspect_expected"] = float(np.median(aspects))
    details["min_side"] = {"rule": "half the median shorter side"}
    details["aspect_expected"] = {"rule": "median width/height"}
    t = QualityThresholds(
        **{**base.to_dict(), **vals,
           "source": f"robust statistics of this dataset (n={len(ok)}, k={k})", "details": details})
    return t.with_overrides(overrides)


# --------------------------------------------------------------------------------------------------
# Per-image measurements (everything but BRISQUE)
# --------------------------------------------------------------------------------------------------
_HF_MASKS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _fft_masks(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (high band, everything but DC) over the rfft2 grid, cached per shape."""
    key = (h, w)
    if key not in _HF_MASKS:
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        r = np.sqrt(fy ** 2 + fx ** 2) / 0.5  # radius as a fraction of Nyquist
        nondc = r > 0
        _HF_MASKS[key] = (r > 0.5, nondc)
    return _HF_MASKS[key]


def _rfft2(x: np.ndarray) -> np.ndarray:
    try:  # scipy's pocketfft keeps float32 (complex64): ~1.4x faster than numpy's float64 path
        import scipy.fft

        return scipy.fft.rfft2(x, workers=1)
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return np.fft.rfft2(x)


def fft_blur(gray: np.ndarray) -> float:
    """log10 share of spectral energy above half the Nyquist frequency (higher = sharper).

    Why: blur removes high frequencies whatever the image content; the share (not the absolute
    energy) makes it independent of contrast, and radius relative to Nyquist makes it independent
    of resolution. A constant image has no non-DC energy: NaN.
    """
    g = gray.astype(np.float32)
    g -= g.mean()
    spec = _rfft2(g)
    p = spec.real ** 2 + spec.imag ** 2
    hi, nondc = _fft_masks(*gray.shape)
    total = float(p[nondc].sum())
    if total <= 0:
        return float("nan")
    return float(np.log10(max(float(p[hi].sum()) / total, 1e-12)))


def measure_quality(img: np.ndarray) -> dict[str, float]:
    """Raw quality measurements of one BGR uint8 image (BRISQUE excluded, see `brisque_batch`).

    Why one function: the audit pass decodes each image once and derives every measurement from the
    same pixels; the 256-bin gray histogram alone gives percentiles, contrast and entropy.
    """
    h, w = img.shape[:2]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    n = hist.sum()
    cdf = np.cumsum(hist) / n
    levels = np.arange(256, dtype=np.float64)
    mean = float((hist * levels).sum() / n)
    var = float((hist * (levels - mean) ** 2).sum() / n)
    pnz = hist[hist > 0] / n
    b, g, r = cv2.split(img)
    chroma = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=1)
    _, lap_std = cv2.meanStdDev(lap)
    return {
        "width": int(w),
        "height": int(h),
        "aspect": float(w / h),
        "laplacian_var": float(lap_std[0, 0]) ** 2,
        "fft_blur": fft_blur(gray),
        "brightness_p5": float(np.searchsorted(cdf, 0.05)),
        "brightness_p50": float(np.searchsorted(cdf, 0.50)),
        "brightness_p95": float(np.searchsorted(cdf, 0.95)),
        "contrast": math.sqrt(var),
        "entropy": float(-(pnz * np.log2(pnz)).sum()),
        "chroma": float(cv2.mean(chroma)[0]),
    }


def is_constant(img: np.ndarray) -> bool:
    """True when every pixel has the same value (BRISQUE and blur measures are undefined then)."""
    return bool(img.size) and int(img.max()) == int(img.min())


# --------------------------------------------------------------------------------------------------
# BRISQUE, reproducing piq
# --------------------------------------------------------------------------------------------------
class _Brisque:
    """Per-process cache of everything piq rebuilds on each call (tables, weights, resize plans)."""

    _inst: "_Brisque | None" = None

    def __init__(self) -> None:
        import torch

        self.torch = torch
        f32 = torch.float32
        g = torch.arange(0.2, 10 + 0.001, 0.001, dtype=f32)
        self.ggd_gamma = g
        self.ggd_table = (torch.lgamma(1. / g) + torch.lgamma(3. / g) - 2 * torch.lgamma(2. / g)).exp()
        g2 = torch.arange(start=0.2, end=10.001, step=0.001, dtype=f32)
        self.aggd_gamma = g2
        self.aggd_table = torch.exp(2 * torch.lgamma(2. / g2) - torch.lgamma(1. / g2) - torch.lgamma(3. / g2))
        self.kernel = _gaussian_kernel(torch, 7, 7 / 6).view(1, 1, 7, 7)
        sv_coef, sv = load_brisque_weights()
        self.sv = sv.t()  # (36, n_sv): piq's sv.t_() (a transposed view, as there)
        self.sv_coef = sv_coef.type(f32)
        self.resize_plans: dict[tuple[int, int], tuple[Any, Any]] = {}
        self.feature_lo, self.feature_hi = _feature_ranges(torch)

    @classmethod
    def get(cls) -> "_Brisque":
        """The process-wide instance (built on first use: weights and tables once per process)."""
        if cls._inst is None:
            cls._inst = cls()
        return cls._inst

    # -- resize (piq.functional.imresize, bicubic, antialiased, MATLAB 'symmetric' padding) --------
    def _plan(self, n_in: int, n_out: int):
        """Cached (source indices (k, n_out), weights (k, n_out), pad_pre, pad_post, affine step)
        of piq's resize_1d along one axis; step is set when index = step*i + k + start."""
        key = (n_in, n_out)
        if key not in self.resize_plans:
            torch = self.torch

            scale = n_out / n_in
            kernel_size = 4
            if scale < 1:
                antialiasing_factor = scale
                kernel_size = math.ceil(kernel_size / antialiasing_factor)
            else:
                antialiasing_factor = 1
            kernel_size += 2
            pos = torch.linspace(0, n_out - 1, steps=n_out, dtype=torch.float32)
            pos = (pos + 0.5) / scale - 0.5
            base = pos.floor() - (kernel_size // 2) + 1
            dist = pos - base
            weight = _cubic_weight(torch, dist, kernel_size, antialiasing_factor)
            pad_pre, pad_post, base = _get_padding(base, kernel_size, n_in)
            src = torch.arange(-pad_pre, n_in + pad_post)
            src = torch.where(src < 0, -src - 1, src)
            src = torch.where(src >= n_in, 2 * n_in - 1 - src, src).clamp(0, n_in - 1)
            idx = src[base[None, :] + torch.arange(kernel_size)[:, None]]  # (k, n_out) into input
            step = None
            if n_out > 1:
                d = base[1:] - base[:-1]
                if bool((d == d[0]).all()) and int(d[0]) > 0:
                    step = int(d[0])
            self.resize_plans[key] = (idx, weight, int(pad_pre), int(pad_post), step, int(base[0]), src)
        return self.resize_plans[key]

    def _products(self, x, axis: int, n_out: int):
        """(N, L, M) -> (N, k, n_out, M) for axis=1, or (N, k, L, n_out) for axis=2: piq's
        `unfold[..., base, :] * weight` (exact IEEE products, contiguous, piq's shape)."""
        torch = self.torch
        n = x.shape[0]
        n_in = x.shape[axis]
        idx, weight, pad_pre, pad_post, step, b0, src = self._plan(n_in, n_out)
        k = idx.shape[0]
        if axis == 1:
            other = x.shape[2]
            wv = weight.view(1, k, n_out, 1)
            shape = (n, k, n_out, other)
        else:
            other = x.shape[1]
            wv = weight.view(1, k, 1, n_out)
            shape = (n, k, other, n_out)
        prod = torch.empty(shape, dtype=x.dtype)
        if step is not None:
            # padded copy (MATLAB symmetric padding), then a strided window view: no gather
            xp = x.index_select(axis, src) if (pad_pre or pad_post) else x
            st = xp.stride()
            if axis == 1:  # one multiply per tap: rows step by `step`, each row contiguous (vectorised)
                for j in range(k):
                    rows = xp.as_strided((n, n_out, other), (st[0], step * st[1], st[2]),
                                         xp.storage_offset() + (b0 + j) * st[1])
                    torch.mul(rows, weight[j].view(1, n_out, 1), out=prod[:, j])
            else:
                view = xp.as_strided(shape, (st[0], st[2], st[1], step * st[2]), xp.storage_offset() + b0 * st[2])
                torch.mul(view, wv, out=prod)
        elif axis == 1:
            sample = x.index_select(1, idx.reshape(-1)).view(shape)
            torch.mul(sample, wv, out=prod)
        else:
            sample = x.index_select(2, idx.reshape(-1)).view(n, other, k, n_out)
            torch.mul(sample.permute(0, 2, 1, 3), wv, out=prod)
        return prod

    def _half(self, x):
        """x (N,1,H,W) -> (N,1,H//2,W//2): piq's imresize(x, sizes=(H//2, W//2)).

        The product tensors have piq's shapes and layout, so torch reduces them in the same order."""
        n, _, h, w = x.shape
        y = self._products(x.view(n, h, w), 1, h // 2).sum(dim=1)            # (N, H', W)
        return self._products(y, 2, w // 2).sum(dim=1, keepdim=True)       # (N, 1, H', W')

    # -- natural scene statistics (piq.brisque._natural_scene_statistics, batched) -----------------
    def _blur(self, x):
        """Gaussian 7x7 filter, zero padding, taps accumulated row by row with fused multiply-adds,
        exactly like piq's F.conv2d on a contiguous (N,1,H,W) tensor. One depthwise convolution
        over the batch instead of N single-channel ones: several times faster, same bits."""
        torch = self.torch
        n, _, h, w = x.shape
        x = x.reshape(n, h, w).contiguous()
        if n == 1:  # a (1,1,H,W) tensor with standard strides takes oneDNN's row-major path
            return torch.nn.functional.conv2d(x.view(1, 1, h, w), self.kernel, padding=3).contiguous()
        out = torch.nn.functional.conv2d(x.view(1, n, h, w), self.kernel.expand(n, 1, 7, 7), padding=3, groups=n)
        return out.contiguous().view(n, 1, h, w)

    def _nss(self, luma, first_scale: bool):
        """piq's _natural_scene_statistics on a batch: pixel maps bit-identical, sums reordered."""
        torch = self.torch
        n, _, h, w = luma.shape
        if first_scale:
            # piq's luma at the first scale is a strided view (channel stride 1), for which oneDNN
            # picks its channels-last kernel: it accumulates the 49 taps column by column. The kernel
            # is symmetric, so that equals our row-major filter applied to the transposed image.
            lt = luma.transpose(-1, -2)
            if h == w:
                both = self._blur(torch.cat([lt, luma ** 2], dim=0))
                mu, std = both[:n].transpose(-1, -2).contiguous(), both[n:]
            else:
                mu, std = self._blur(lt).transpose(-1, -2).contiguous(), self._blur(luma ** 2)
        else:
            both = self._blur(torch.cat([luma, luma ** 2], dim=0))
            mu, std = both[:n], both[n:]
        # same operations as piq, done in place (identical values, fewer 10 MB allocations)
        std.sub_(mu ** 2).abs_().sqrt_().add_(1)
        m = torch.sub(luma, mu, out=mu).div_(std)
        del std
        bad = torch.zeros(n, dtype=torch.bool)

        sigma_sq = m.pow(2).mean(dim=(-1, -2))
        sigma = sigma_sq.sqrt().squeeze(dim=-1)
        bad |= torch.isclose(sigma, torch.zeros_like(sigma))
        e = m.abs().mean(dim=(-1, -2))
        rho = sigma_sq / e ** 2
        alpha = self.ggd_gamma[(rho - self.ggd_table).abs().argmin(dim=-1)]
        feats = [alpha, sigma.pow(2)]
        for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
            p = _times_rolled(torch, m, shift)
            left, right = p < 0, p > 0
            # counts summed as integers (exact; piq's float32 sum of ones is exact too, < 2**24)
            cl = left.sum(dim=(-1, -2)).to(p.dtype)
            cr = right.sum(dim=(-1, -2)).to(p.dtype)
            p2 = p.pow(2)
            # clamp(p, max=0) ** 2 holds the very values of piq's (p * mask_left) ** 2 (and likewise on
            # the right), without a bool->float copy or a slow masked kernel
            ls = (p.clamp(max=0).pow_(2).sum(dim=(-1, -2)) / cl.clamp(min=1)).sqrt()
            rs = (p.clamp(min=0).pow_(2).sum(dim=(-1, -2)) / cr.clamp(min=1)).sqrt()
            bad |= ((cl == 0) | (cr == 0) | (ls <= 0) | (rs <= 0)).view(-1)
            gamma_hat = ls / rs.clamp(min=1e-30)
            ro_hat = p.abs().mean(dim=(-1, -2)).pow(2) / p2.mean(dim=(-1, -2)).clamp(min=1e-30)
            ro_norm = (ro_hat * (gamma_hat.pow(3) + 1) * (gamma_hat + 1)) / (gamma_hat.pow(2) + 1).pow(2)
            a = self.aggd_gamma[(ro_norm - self.aggd_table).abs().argmin(dim=-1)]
            ls, rs = ls.squeeze(dim=-1), rs.squeeze(dim=-1)
            eta = (rs - ls) * torch.exp(torch.lgamma(2. / a) - (torch.lgamma(1. / a) + torch.lgamma(3. / a)) / 2)
            feats.extend((a, eta, ls.pow(2), rs.pow(2)))
        return torch.stack(feats, dim=-1), bad

    def features(self, luma: Any) -> tuple[Any, Any]:
        """(N,1,H,W) float32 luma -> (N, 36) BRISQUE features and a mask of undefined images."""
        torch = self.torch
        with torch.no_grad():
            f1, bad1 = self._nss(luma, first_scale=True)
            f2, bad2 = self._nss(self._half(luma), first_scale=False)
        return torch.cat([f1, f2], dim=-1), bad1 | bad2

    def score(self, feats: Any) -> Any:
        """piq's _scale_features + _score_svr in float32, one image at a time with piq's tensor
        shapes, so that even the rounding of the SVR sum matches a per-image piq call."""
        torch = self.torch
        lo, hi = self.feature_lo, self.feature_hi
        out = []
        with torch.no_grad():
            for f in feats.split(1, dim=0):
                scaled = -1 + (1 - -1) * (f - lo) / (hi - lo)
                dist = (scaled.unsqueeze(dim=-1) - self.sv.unsqueeze(dim=0)).pow(2).sum(dim=1)
                k = torch.exp(- dist * 0.05)
                out.append(k @ self.sv_coef - (-153.591))
        return torch.cat(out).to(torch.float64)


def _times_rolled(torch, m, shift: tuple[int, int]):
    """m * torch.roll(m, shifts=shift, dims=(-2, -1)) without materialising the rolled copy: the
    cyclic shift splits the plane into up to four blocks, each one multiply of two views."""
    dy, dx = shift
    h, w = m.shape[-2:]
    out = torch.empty_like(m)
    # rolled[i, j] = m[(i - dy) % h, (j - dx) % w]; split rows and columns where the wrap happens
    row_parts = [(slice(0, dy), slice(h - dy, h)), (slice(dy, h), slice(0, h - dy))] if dy > 0 else \
        [(slice(0, h + dy), slice(-dy, h)), (slice(h + dy, h), slice(0, -dy))] if dy < 0 else [(slice(0, h), slice(0, h))]
    col_parts = [(slice(0, dx), slice(w - dx, w)), (slice(dx, w), slice(0, w - dx))] if dx > 0 else \
        [(slice(0, w + dx), slice(-dx, w)), (slice(w + dx, w), slice(0, -dx))] if dx < 0 else [(slice(0, w), slice(0, w))]
    for (ro, ri) in row_parts:
        for (co, ci) in col_parts:
            torch.mul(m[..., ro, co], m[..., ri, ci], out=out[..., ro, co])
    return out


# The three helpers below are piq 0.8.0's `gaussian_filter`, `get_weight(kernel="cubic")` (with
# `cubic_contribution`) and `get_padding`, same torch operations in the same order (piq is Apache-2.0,
# https://github.com/photosynthesis-team/piq). Copied because importing piq pulls in torchvision and
# costs ~4 s of CPU per worker process; the piq-equivalence test guards them.
def _gaussian_kernel(torch, kernel_size: int, sigma: float):
    coords = torch.arange(kernel_size, dtype=torch.float32)
    coords -= (kernel_size - 1) / 2.
    g = coords ** 2
    g = (- (g.unsqueeze(0) + g.unsqueeze(1)) / (2 * sigma ** 2)).exp()
    g /= g.sum()
    return g.unsqueeze(0)


def _cubic_weight(torch, dist, kernel_size: int, antialiasing_factor: float):
    buffer_pos = dist.new_zeros(kernel_size, len(dist))
    for idx, buffer_sub in enumerate(buffer_pos):
        buffer_sub.copy_(dist - idx)
    buffer_pos *= antialiasing_factor
    a = -0.5
    ax = buffer_pos.abs()
    ax2 = ax * ax
    ax3 = ax * ax2
    range_01 = ax.le(1)
    range_12 = torch.logical_and(ax.gt(1), ax.le(2))
    cont_01 = (a + 2) * ax3 - (a + 3) * ax2 + 1
    cont_01 = cont_01 * range_01.to(dtype=buffer_pos.dtype)
    cont_12 = (a * ax3) - (5 * a * ax2) + (8 * a * ax) - (4 * a)
    cont_12 = cont_12 * range_12.to(dtype=buffer_pos.dtype)
    weight = cont_01 + cont_12
    weight /= weight.sum(dim=0, keepdim=True)
    return weight


def _get_padding(base, kernel_size: int, x_size: int):
    base = base.long()
    r_min = base.min()
    r_max = base.max() + kernel_size - 1
    if r_min <= 0:
        pad_pre = -r_min
        pad_pre = pad_pre.item()
        base += pad_pre
    else:
        pad_pre = 0
    if r_max >= x_size:
        pad_post = r_max - x_size + 1
        pad_post = pad_post.item()
    else:
        pad_post = 0
    return pad_pre, pad_post, base


def _feature_ranges(torch):
    r = torch.tensor([[0.338, 10], [0.017204, 0.806612], [0.236, 1.642],
                      [-0.123884, 0.20293], [0.000155, 0.712298], [0.001122, 0.470257],
                      [0.244, 1.641], [-0.123586, 0.179083], [0.000152, 0.710456],
                      [0.000975, 0.470984], [0.249, 1.555], [-0.135687, 0.100858],
                      [0.000174, 0.684173], [0.000913, 0.534174], [0.258, 1.561],
                      [-0.143408, 0.100486], [0.000179, 0.685696], [0.000888, 0.536508],
                      [0.471, 3.264], [0.012809, 0.703171], [0.218, 1.046],
                      [-0.094876, 0.187459], [1.5e-005, 0.442057], [0.001272, 0.40803],
                      [0.222, 1.042], [-0.115772, 0.162604], [1.6e-005, 0.444362],
                      [0.001374, 0.40243], [0.227, 0.996], [-0.117188, 0.09832299999999999],
                      [3e-005, 0.531903], [0.001122, 0.369589], [0.228, 0.99], [-0.12243, 0.098658],
                      [2.8e-005, 0.530092], [0.001118, 0.370399]], dtype=torch.float32)
    return r[..., 0], r[..., 1]


def load_brisque_weights() -> tuple[Any, Any]:
    """piq's BRISQUE SVR weights (sv_coef, sv) from the torch hub cache ($TORCH_HOME).

    Why a function: workers must fail with a clear message, not a network traceback, when the
    weights are not cached on an offline machine.
    """
    from torch.hub import get_dir, load_state_dict_from_url

    cached = Path(get_dir()) / "checkpoints" / os.path.basename(BRISQUE_URL)
    try:
        return load_state_dict_from_url(BRISQUE_URL, map_location="cpu", progress=False)
    except Exception as e:  # offline and not cached
        raise RuntimeError(
            f"piq's BRISQUE weights are not at {cached} and could not be downloaded ({e}); "
            "set TORCH_HOME to a folder holding hub/checkpoints/brisque_svm_weights.pt") from e


def luma_for_brisque(rgb: np.ndarray) -> np.ndarray:
    """The luma piq's BRISQUE sees for an RGB uint8 image given as float in [0, 1] (data_range=1).

    Reproduces `round(rgb2yiq(x / 255 * 255)[:, :1])` exactly (float32 ops in the same order).
    """
    return _luma_planes(*cv2.split(np.ascontiguousarray(rgb)))


def _luma_planes(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """0.299 R + 0.587 G + 0.114 B on x / 255 * 255 in float32, summed left to right, rounded
    (piq's order); planar and in place, ~2x faster than on interleaved channels."""
    def chan(c: np.ndarray) -> np.ndarray:
        x = c.astype(np.float32)
        x /= np.float32(255)
        x *= np.float32(255)
        return x

    y = chan(r)
    y *= np.float32(0.299)
    t = chan(g)
    t *= np.float32(0.587)
    y += t
    t = chan(b)
    t *= np.float32(0.114)
    y += t
    return np.round(y, out=y)


def brisque_batch(images: Sequence[np.ndarray], bgr: bool = True) -> np.ndarray:
    """BRISQUE of each image (lower is better), equal to `piq.brisque(x, data_range=1.)` on
    x = RGB/255, computed in batches of equal-sized images.

    Why: BRISQUE is the dominant cost of the audit pass (piq: ~6 ms per 200x200 image); this path
    keeps piq's numbers (relative difference < 1e-3, usually ~1e-6) at a fraction of the time.
    Constant images (piq asserts on black or white ones and returns a number made of float rounding
    noise for grey ones), images where piq would assert (no variance, or no negative/positive
    neighbour products) and images with a side < MIN_BRISQUE_SIDE get NaN instead of an exception.
    """
    import torch

    model = _Brisque.get()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batched ops: extra OpenMP threads only spin (badly on busy CPUs)
    try:
        return _brisque_batch(model, images, bgr)
    finally:
        torch.set_num_threads(threads)


def _brisque_batch(model: "_Brisque", images: Sequence[np.ndarray], bgr: bool) -> np.ndarray:
    import torch

    out = np.full(len(images), np.nan, dtype=np.float64)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        if im is None or min(im.shape[:2]) < MIN_BRISQUE_SIDE or is_constant(im):
            continue  # undefined: piq asserts (black, white) or scores float rounding noise (grey)
        by_shape.setdefault(im.shape[:2], []).append(i)
    for (h, w), idxs in by_shape.items():
        step = max(1, BRISQUE_BATCH_PIXELS // (h * w))
        for s in range(0, len(idxs), step):
            part = idxs[s:s + step]
            lumas = []
            for i in part:
                im = images[i]
                if im.ndim == 2:
                    lumas.append(np.round(im.astype(np.float32)))  # piq: a 1-channel image is used as is
                    continue
                c0, c1, c2 = cv2.split(im)
                lumas.append(_luma_planes(c2, c1, c0) if bgr else _luma_planes(c0, c1, c2))
            luma = torch.from_numpy(np.stack(lumas)[:, None])
            feats, bad = model.features(luma)
            scores = model.score(feats).numpy()
            scores[bad.numpy()] = np.nan
            out[part] = scores
    return out


def piq_brisque(images: Sequence[np.ndarray], bgr: bool = True) -> np.ndarray:
    """Reference: piq's own `brisque` per image (slow; NaN where piq raises). For tests and bench."""
    import piq
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _piq_brisque(piq, torch, images, bgr)
    finally:
        torch.set_num_threads(threads)


def _piq_brisque(piq, torch, images: Sequence[np.ndarray], bgr: bool) -> np.ndarray:
    out = []
    for im in images:
        rgb = im[..., ::-1] if bgr else im
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.
        try:
            out.append(float(piq.brisque(x, data_range=1., reduction="none")[0]))
        except (AssertionError, RuntimeError):
            out.append(float("nan"))
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Scores, flags and verdicts
# --------------------------------------------------------------------------------------------------
def _clip01(x: pd.Series | np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)


# Fixed (dataset-independent) maps from raw measures to 0..1 scores, lower = worse; written to the
# sidecar so every number can be traced.
SCORE_DEFINITIONS = {
    "brisque_score": "clip(1 - brisque / 100)",
    "sharpness_score": "clip(log10(1 + laplacian_var) / 4)",
    "fft_blur_score": "clip((fft_blur + 4) / 3)",
    "dark_score": "brightness_p95 / 255",
    "overexposed_score": "1 - brightness_p5 / 255",
    "contrast_score": "clip(contrast / 64)",
    "information_score": "entropy / 8",
    "color_score": "clip(chroma / 20)",
}


def add_quality_flags(df: pd.DataFrame, thresholds: QualityThresholds) -> pd.DataFrame:
    """Add scores, `is_*` flags, `low_quality` and `quality_reasons` to a frame of measurements.

    Why separate from measuring: flags depend on thresholds (dataset statistics or config), raw
    measurements do not; cached measurements can be re-flagged in milliseconds.
    A row whose `status` is not "ok" is always `low_quality`, with the status as first reason.
    """
    t = thresholds
    out = df.copy()
    num = {c: pd.to_numeric(out[c], errors="coerce") for c in RAW_COLUMNS if c in out}
    out["brisque_score"] = _clip01(1 - num["brisque"] / 100)
    out["sharpness_score"] = _clip01(np.log10(1 + num["laplacian_var"].clip(lower=0)) / 4)
    out["fft_blur_score"] = _clip01((num["fft_blur"] + 4) / 3)
    out["dark_score"] = _clip01(num["brightness_p95"] / 255)
    out["overexposed_score"] = _clip01(1 - num["brightness_p5"] / 255)
    out["contrast_score"] = _clip01(num["contrast"] / 64)
    out["information_score"] = _clip01(num["entropy"] / 8)
    out["color_score"] = _clip01(num["chroma"] / 20)
    for c in SCORE_COLUMNS:  # keep NaN where the measure is missing
        src = {"brisque_score": "brisque", "sharpness_score": "laplacian_var", "fft_blur_score": "fft_blur",
               "dark_score": "brightness_p95", "overexposed_score": "brightness_p5",
               "contrast_score": "contrast", "information_score": "entropy", "color_score": "chroma"}[c]
        out.loc[num[src].isna(), c] = np.nan

    def lt(col: str, thr: float) -> np.ndarray:
        return (num[col] < thr).fillna(False).to_numpy(dtype=bool)

    def gt(col: str, thr: float) -> np.ndarray:
        return (num[col] > thr).fillna(False).to_numpy(dtype=bool)

    # Blur flag from the Laplacian alone: on face crops a low high-frequency share (fft_blur) marks
    # smooth, clean skin as often as blur, while JPEG blocking keeps it high on blurry upscaled crops;
    # fft_blur is reported as a measurement and score, not used as a flag.
    out["is_blurry"] = lt("laplacian_var", t.laplacian_var_min)
    out["is_high_brisque"] = gt("brisque", t.brisque_max)
    out["is_dark"] = lt("brightness_p95", t.brightness_p95_max_dark)
    out["is_overexposed"] = gt("brightness_p5", t.brightness_p5_min_over)
    out["is_low_contrast"] = lt("contrast", t.contrast_min)
    out["is_low_information"] = lt("entropy", t.entropy_min)
    out["is_grayscale"] = lt("chroma", t.chroma_max_gray)
    side = np.minimum(num["width"], num["height"])
    aspect_off = (num["aspect"] / t.aspect_expected - 1).abs() > t.aspect_tolerance
    out["is_odd_size"] = ((side < t.min_side) | aspect_off).fillna(False).to_numpy(dtype=bool)

    status = out["status"].astype(str).to_numpy() if "status" in out else np.full(len(out), "ok")
    flags = out[FLAG_COLUMNS].to_numpy(dtype=bool)
    words = [REASONS[c] for c in FLAG_COLUMNS]
    reasons = []
    for st, row in zip(status, flags):
        r = [] if st == "ok" else [st]
        r.extend(w for w, f in zip(words, row) if f)
        reasons.append("; ".join(r))
    out["quality_reasons"] = reasons
    out["low_quality"] = (status != "ok") | flags.any(axis=1)
    return out


@dataclass
class Verdict:
    """Whether one image is usable, and why not (human words: "too dark; blurry")."""

    ok: bool
    status: str
    reasons: list[str]
    measurements: dict[str, float]


def quality_verdict(images: Iterable[np.ndarray | str | os.PathLike],
                    thresholds: QualityThresholds | str | os.PathLike | None = None) -> list[Verdict]:
    """Judge a few images (BGR arrays or paths) against thresholds (object, JSON path, or None for
    the built-in UTKFace defaults).

    Why: `curate predict` refuses an unusable photo with its reason before trusting the model, using
    the thresholds saved from the training set's audit.
    """
    from audits.runner import decode_image

    if thresholds is None:
        thr = DEFAULT_THRESHOLDS
    elif isinstance(thresholds, QualityThresholds):
        thr = thresholds
    else:
        thr = QualityThresholds.load(thresholds)
    rows: list[dict[str, Any]] = []
    arrays: list[np.ndarray | None] = []
    for item in images:
        if isinstance(item, np.ndarray):
            img, status = item, ""
        else:
            img, status = decode_image(Path(item))
        status = status or image_status(img)
        rows.append({"status": status})
        arrays.append(img if status == "ok" else None)
    for row, img in zip(rows, arrays):
        if img is not None:
            row.update(measure_quality(img))
    ok_idx = [i for i, a in enumerate(arrays) if a is not None]
    br = brisque_batch([arrays[i] for i in ok_idx]) if ok_idx else np.zeros(0)
    for i, v in zip(ok_idx, br):
        rows[i]["brisque"] = float(v)
    df = pd.DataFrame(rows)
    for c in RAW_COLUMNS:
        if c not in df:
            df[c] = np.nan
    flagged = add_quality_flags(df, thr)
    out = []
    for rec, raw in zip(flagged.to_dict("records"), rows):
        reasons = [r for r in rec["quality_reasons"].split("; ") if r]
        meas = {k: float(v) for k, v in raw.items() if k != "status" and v is not None}
        out.append(Verdict(ok=not rec["low_quality"], status=rec["status"], reasons=reasons, measurements=meas))
    return out


def image_status(img: np.ndarray | None) -> str:
    """"ok", or why the image cannot be audited as a photo ("too small (1x1)", "constant image").

    Why: piq asserts on a constant image and a 1x1 image has no texture to measure; such files get a
    clear per-image status instead of crashing the whole run.
    """
    if img is None:
        return "corrupt image (decoder failed)"
    h, w = img.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        return f"too small ({w}x{h})"
    if is_constant(img):
        return "constant image"
    return "ok"
