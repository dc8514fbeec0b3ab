"""Colour handling for style transfer: YIQ luminance/chroma and colour matching.

Two ways to keep the content's colours (Gatys et al., "Preserving Color in
Neural Artistic Style Transfer", 2016):

``luminance``
    Transfer on the luminance channel only. Content and styles become grey
    (the Y of YIQ), each style's luminance is shifted and scaled to the
    content's mean and standard deviation, the transfer runs on grey images,
    and the result's Y is recombined with the content's chroma (I, Q).
``histogram``
    Before the transfer, each style's colours are mapped by the affine map
    that gives them the content's colour mean and covariance
    (:func:`match_color`).

All images are float32 (H, W, 3) RGB in [0, 1]; luminance images are
float32 (H, W) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: RGB → YIQ (NTSC 1953 primaries, as in scikit-image's ``rgb2yiq``).
RGB_TO_YIQ = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.59590059, -0.27455667, -0.32134392],
        [0.21153661, -0.52273617, 0.31119955],
    ]
)
#: YIQ → RGB, the exact inverse of :data:`RGB_TO_YIQ`.
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)

#: Added to covariance eigenvalues so grey or flat images (rank-deficient
#: covariance) map without dividing by zero.
COV_EPS = 1e-5
#: Floor of a standard deviation in :func:`match_luminance` (a flat style).
STD_FLOOR = 1e-6


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    """RGB (…, 3) in [0, 1] → YIQ (…, 3): Y in [0, 1], I in ±0.596, Q in ±0.523."""
    return (np.asarray(image, dtype=np.float64) @ RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """YIQ (…, 3) → RGB (…, 3), not clipped (out-of-gamut values may leave [0, 1])."""
    return (np.asarray(yiq, dtype=np.float64) @ YIQ_TO_RGB.T).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """The Y (luma) channel of an RGB image: float32 (H, W) in [0, 1]."""
    return np.ascontiguousarray(rgb_to_yiq(image)[..., 0])


def grey_rgb(y: np.ndarray) -> np.ndarray:
    """A luminance image (H, W) repeated into R, G and B: float32 (H, W, 3)."""
    return np.ascontiguousarray(np.repeat(np.asarray(y, dtype=np.float32)[..., None], 3, axis=-1))


def recombine(y: np.ndarray, chroma_from: np.ndarray) -> np.ndarray:
    """RGB image with luminance ``y`` (H, W) and the I, Q channels of ``chroma_from``.

    Parameters
    ----------
    y : np.ndarray, (H, W), values in [0, 1]
    chroma_from : np.ndarray, (H, W, 3) RGB in [0, 1]
        Same size as ``y``.

    Returns
    -------
    np.ndarray float32 (H, W, 3) in [0, 1]. Where the combination falls
    outside the RGB cube it is clipped, so there the chroma (and luminance)
    differ from the request; elsewhere Y, I and Q are exact.
    """
    yiq = rgb_to_yiq(chroma_from)
    yiq[..., 0] = y
    return np.ascontiguousarray(np.clip(yiq_to_rgb(yiq), 0.0, 1.0), dtype=np.float32)


def match_luminance(y: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Shift and scale ``y`` to ``reference``'s mean and standard deviation.

    Both are luminance images (any shapes); the result is ``y``'s shape,
    clipped to [0, 1]. A flat ``y`` becomes the reference's mean.
    """
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    scale = ref.std() / max(y.std(), STD_FLOOR)
    out = (y - y.mean()) * scale + ref.mean()
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _sqrt_and_inv_sqrt(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, vec = np.linalg.eigh(cov + COV_EPS * np.eye(3))
    lam = np.maximum(lam, COV_EPS)
    return (vec * np.sqrt(lam)) @ vec.T, (vec / np.sqrt(lam)) @ vec.T


def match_color(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map ``image``'s colours so their mean and covariance are ``reference``'s.

    ``x ↦ C_r^½ C_i^-½ (x − μ_i) + μ_r`` with symmetric matrix square roots
    (the map of Gatys et al. 2016 that rotates colours least). Covariances
    get :data:`COV_EPS` on the diagonal, so a grey image (whose colours lie
    on one line) takes the reference's colours along that line instead of
    dividing by zero.

    Parameters
    ----------
    image, reference : np.ndarray, (H, W, 3) RGB in [0, 1] (sizes may differ)

    Returns
    -------
    np.ndarray float32, ``image``'s shape, clipped to [0, 1].
    """
    x = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    r = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    mu_x, mu_r = x.mean(axis=0), r.mean(axis=0)
    _, inv_sqrt_x = _sqrt_and_inv_sqrt(np.cov(x, rowvar=False))
    sqrt_r, _ = _sqrt_and_inv_sqrt(np.cov(r, rowvar=False))
    out = (x - mu_x) @ (sqrt_r @ inv_sqrt_x).T + mu_r
    return np.clip(out, 0.0, 1.0).reshape(np.shape(image)).astype(np.float32)


def match_palette(
    image: np.ndarray, references: Sequence[np.ndarray], weights: Sequence[float] | None = None
) -> np.ndarray:
    """:func:`match_color` toward the colour mean and covariance of several images blended.

    The blend is the mixture of the references' colour distributions with
    ``weights`` (default equal): mean ``Σ w μ_r``, covariance
    ``Σ w (C_r + μ_r μ_rᵀ) − μ μᵀ``. With one reference it is
    :func:`match_color`.

    Parameters
    ----------
    image : np.ndarray (H, W, 3) RGB in [0, 1]
    references : sequence of np.ndarray (h, w, 3) RGB in [0, 1]

    Returns
    -------
    np.ndarray float32, ``image``'s shape, clipped to [0, 1].
    """
    w = np.ones(len(references)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    pixels = [np.asarray(r, dtype=np.float64).reshape(-1, 3) for r in references]
    means = [p.mean(axis=0) for p in pixels]
    mu_r = sum(wi * m for wi, m in zip(w, means, strict=True))
    second = sum(
        wi * (np.cov(p, rowvar=False) + np.outer(m, m)) for wi, p, m in zip(w, pixels, means, strict=True)
    )
    cov_r = second - np.outer(mu_r, mu_r)
    x = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    mu_x = x.mean(axis=0)
    _, inv_sqrt_x = _sqrt_and_inv_sqrt(np.cov(x, rowvar=False))
    sqrt_r, _ = _sqrt_and_inv_sqrt(cov_r)
    out = (x - mu_x) @ (sqrt_r @ inv_sqrt_x).T + mu_r
    return np.clip(out, 0.0, 1.0).reshape(np.shape(image)).astype(np.float32)
