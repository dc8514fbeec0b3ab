"""Loss terms built from Gram descriptors, and the objective handed to the driver.

Style (texture) loss of an image x against target Grams A::

    L(x) = Σ_k Σ_l  w_k · w_l · ‖G_kl(x) − A_kl‖²_F / ‖A_kl‖²_F   /   Σ_k Σ_l w_k · w_l

with k over octaves, l over layers, w the octave and layer weights. Each
term is a *relative* squared error, so layers with large activations do not
drown the others and octaves of any size count alike; the whole is a
weighted mean, so 0.01 reads as "Grams within about 10 %".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._tf import tf
from .backbone import VGG16
from .config import DescriptorConfig
from .gram import GramKey, pyramid_grams

#: Floor of ‖A‖² so an all-zero target (a black source) cannot divide by zero.
_NORM_FLOOR = 1e-8


def style_loss(
    grams: Mapping[GramKey, tf.Tensor],
    targets: Mapping[GramKey, tf.Tensor],
    *,
    config: DescriptorConfig,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The multiscale style loss (see the module docstring).

    Parameters
    ----------
    grams, targets : dict of (octave, layer) → tf.Tensor (C, C)
        Same keys; targets are constants.
    config : DescriptorConfig
        Supplies the layer and octave weights.

    Returns
    -------
    total : tf.Tensor, scalar
    per_octave : tf.Tensor, shape (octaves,)
        Each octave's weighted share, so ``sum(per_octave) == total``.
    """
    lw = dict(zip(config.layers, config.resolved_layer_weights, strict=False))
    ow = config.resolved_octave_weights
    norm = sum(ow) * sum(lw.values())
    per_octave = []
    for k in range(config.octaves):
        terms = []
        for layer in config.layers:
            a = targets[(k, layer)]
            rel = tf.reduce_sum(tf.square(grams[(k, layer)] - a)) / tf.maximum(
                tf.reduce_sum(tf.square(a)), _NORM_FLOOR
            )
            terms.append(lw[layer] * rel)
        per_octave.append(ow[k] * tf.add_n(terms) / norm)
    stacked = tf.stack(per_octave)
    return tf.reduce_sum(stacked), stacked


def gradient_like(x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """A gradient from TF, flattened, in the driver's dtype: float32 for a float32 iterate
    (the projected driver on very large images, no copy), float64 otherwise (scipy)."""
    flat = np.reshape(grad, -1)
    return flat.astype(np.float32 if np.asarray(x).dtype == np.float32 else np.float64, copy=False)


class StyleObjective:
    """Loss and gradient of the style loss over the pixels of one image.

    Built once per output size; :meth:`__call__` is what the L-BFGS-B driver
    calls. The pixel vector is float64 at the scipy boundary and float32
    inside TensorFlow; the conversion happens here, once each way.

    Parameters
    ----------
    targets : dict of (octave, layer) → np.ndarray (C, C)
        The Grams to match (float64 is fine; cast to the network's dtype).
    network : VGG16
    config : DescriptorConfig
    height, width : int
        Output size in pixels.
    """

    def __init__(
        self,
        *,
        targets: Mapping[GramKey, np.ndarray],
        network: VGG16,
        config: DescriptorConfig,
        height: int,
        width: int,
    ) -> None:
        self.shape = (1, height, width, 3)
        self.size = height * width * 3
        self.config = config
        self.network = network
        dtype = network.dtype
        self._dtype = dtype
        self._targets = {key: tf.constant(g, dtype=dtype) for key, g in targets.items()}
        self.last_octave_losses: np.ndarray | None = None

        # autograph=False here and in every traced function of the package: the
        # graphs are Python loops over static structure (octaves, layers, tiles),
        # and autograph's conversion alone cost 1.2–2 s of a 128² objective's
        # first call (1.9–2.9 s against 0.7–0.8 s, measured).
        @tf.function(
            input_signature=[tf.TensorSpec(self.shape, dtype)], reduce_retracing=True, autograph=False
        )
        def loss_and_grad(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                grams = pyramid_grams(x, network=network, config=config)
                total, per_octave = style_loss(grams, self._targets, config=config)
            return total, tape.gradient(total, x), per_octave

        @tf.function(
            input_signature=[tf.TensorSpec(self.shape, dtype)], reduce_retracing=True, autograph=False
        )
        def loss_only(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            grams = pyramid_grams(x, network=network, config=config)
            return style_loss(grams, self._targets, config=config)

        self._loss_and_grad = loss_and_grad
        self._loss_only = loss_only

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 pixel vector ``x`` (RGB in [0, 1]).

        Returns
        -------
        loss : float
        grad : np.ndarray, same shape as ``x``; float64, or float32 for a float32 ``x``
        """
        t = tf.constant(np.reshape(x, self.shape), dtype=self._dtype)
        total, grad, per_octave = self._loss_and_grad(t)
        self.last_octave_losses = per_octave.numpy().astype(np.float64)
        return float(total.numpy()), gradient_like(x, grad.numpy())

    def loss(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss (and per-octave losses) of an (H, W, 3) image in [0, 1], no gradient."""
        t = tf.constant(np.reshape(image, self.shape), dtype=self._dtype)
        total, per_octave = self._loss_only(t)
        return float(total.numpy()), per_octave.numpy().astype(np.float64)
