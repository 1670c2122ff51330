"""Parameter prediction (Denil et al. 2013): a dense weight ``W = U V`` with a fixed dictionary U.

Denil et al. observed that the weights of a first layer, seen as images over the input pixels,
are smooth, so a few values per unit predict the rest. Write the weight of a dense layer as
(in x out) :math:`W = U V` with a *fixed* dictionary :math:`U` (in x r) and trained
coefficients :math:`V` (r x out): only :math:`r \\cdot` out numbers are learned and stored.
With the kernel-ridge dictionary of :func:`kernel_ridge_dictionary`, column j of :math:`V`
holds unit j's weights at r chosen pixels and :math:`U` interpolates them to every pixel;
:func:`random_dictionary` is the baseline without smoothness. :class:`Predicted` is the
parametrization that stores a layer's weight this way and trains only :math:`V`.
See chapter 7, "Predicted parameters".

References
----------
.. [1] Denil, M., Shakibi, B., Dinh, L., Ranzato, M. and de Freitas, N. (2013) Predicting
   parameters in deep learning. NeurIPS, 2148-2156.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..nn.parametrize import Arrays, Deployed, Parametrization
from ._checks import RngLike, check_int, check_tensor

__all__ = [
    "Predicted",
    "kernel_ridge_dictionary",
    "pixel_coordinates",
    "random_dictionary",
]


def pixel_coordinates(shape: Sequence[int]) -> np.ndarray:
    """Row-major (y, x) coordinates of the pixels of an image of ``shape`` (H, W), shape (H W, 2),
    in the order of a flattened image (float64)."""
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {tuple(shape)}")
    h = check_int(shape[0], "shape[0]")
    w = check_int(shape[1], "shape[1]")
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float64)


def _sq_exp(a: np.ndarray, b: np.ndarray, length_scale: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * length_scale**2))


def kernel_ridge_dictionary(
    shape: Sequence[int],
    n_atoms: int | None = None,
    *,
    pixels: np.ndarray | None = None,
    length_scale: float = 2.0,
    ridge: float = 1e-6,
    covariance: np.ndarray | None = None,
    rng: RngLike = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel ridge regression from r chosen pixels to all pixels of an image.

    Parameters
    ----------
    shape : (H, W)
        Image shape; the dictionary has one row per pixel, in flattened (row-major) order.
    n_atoms : int, optional
        Number r of chosen pixels, drawn without replacement with ``rng``.
    pixels : ndarray of int, shape (r,), optional
        Flat indices of the chosen pixels instead (exactly one of ``n_atoms``, ``pixels``).
    length_scale : float > 0
        :math:`\\ell` of the squared-exponential kernel
        :math:`k(p, q) = \\exp(-\\|p - q\\|^2 / 2\\ell^2)` over pixel coordinates.
    ridge : float >= 0
        :math:`\\lambda`, relative to the mean of the kernel's diagonal (0 interpolates
        exactly; a little keeps the solve well conditioned).
    covariance : ndarray, shape (H W, H W), optional
        Use this matrix as the kernel instead of the squared exponential: Denil et al.'s
        "empirical" kernel is the covariance of the input pixels over the training data
        (``length_scale`` is then ignored).
    rng : int, numpy.random.Generator or None
        Seed or generator of the choice of pixels.

    Returns
    -------
    dictionary : ndarray, shape (H W, r)
        :math:`U = K_{:,\\alpha} (K_{\\alpha\\alpha} + \\lambda I)^{-1}`.
    pixels : ndarray of int, shape (r,)
        The chosen pixels :math:`\\alpha` (sorted).

    Notes
    -----
    For a unit whose weights at the chosen pixels are :math:`w_\\alpha`, :math:`U w_\\alpha` is
    the kernel ridge prediction of its weights at every pixel: a smooth function that passes
    through :math:`w_\\alpha` as :math:`\\lambda \\to 0` (row :math:`\\alpha_i` of :math:`U` is
    then the unit vector :math:`e_i`). Denil et al. (2013) used this predictor for the first
    layer of networks on images, with the pixels chosen at random or on a grid.
    """
    coords = pixel_coordinates(shape)
    n_pix = coords.shape[0]
    if (n_atoms is None) == (pixels is None):
        raise ValueError("give exactly one of n_atoms and pixels")
    if pixels is None:
        n_atoms = check_int(n_atoms, "n_atoms", 1, n_pix)
        pixels = np.random.default_rng(rng).choice(n_pix, size=n_atoms, replace=False)
    pixels = np.asarray(pixels)
    if pixels.ndim != 1 or pixels.size == 0 or not np.issubdtype(pixels.dtype, np.integer):
        raise ValueError("pixels must be a non-empty 1-D array of integer pixel indices")
    if pixels.min() < 0 or pixels.max() >= n_pix or np.unique(pixels).size != pixels.size:
        raise ValueError(f"pixels must be distinct indices in [0, {n_pix})")
    if not (isinstance(length_scale, (int, float)) and length_scale > 0):
        raise ValueError(f"length_scale must be a positive number, got {length_scale!r}")
    if not (isinstance(ridge, (int, float)) and ridge >= 0):
        raise ValueError(f"ridge must be a non-negative number, got {ridge!r}")
    pixels = np.sort(pixels)
    if covariance is None:
        anchor = coords[pixels]
        K_pa = _sq_exp(coords, anchor, float(length_scale))
    else:
        cov = check_tensor(covariance, "covariance")
        if cov.shape != (n_pix, n_pix):
            raise ValueError(f"covariance must have shape ({n_pix}, {n_pix}), got {cov.shape}")
        K_pa = (cov + cov.T)[:, pixels] / 2
    K_aa = K_pa[pixels]
    scale = float(np.mean(np.diag(K_aa))) or 1.0
    U = np.linalg.solve(K_aa + float(ridge) * scale * np.eye(pixels.size), K_pa.T).T
    return U, pixels


def random_dictionary(n_inputs: int, n_atoms: int, *, rng: RngLike = None) -> np.ndarray:
    """A random dictionary, shape (n_inputs, n_atoms), entries N(0, 1/n_atoms).

    The baseline of Denil et al. without smoothness: the columns span a random subspace, so
    the learned weights are confined to it whatever the data."""
    n_inputs = check_int(n_inputs, "n_inputs")
    n_atoms = check_int(n_atoms, "n_atoms")
    gen = np.random.default_rng(rng)
    return gen.standard_normal((n_inputs, n_atoms)) / np.sqrt(n_atoms)


class Predicted(Parametrization):
    """A dense weight predicted from a fixed dictionary: ``weight = coefficients @ dictionary.T``.

    Parameters
    ----------
    dictionary : ndarray, shape (in_features, r)
        The fixed :math:`U` (stored as a buffer, never trained).

    Notes
    -----
    In the layer's layout (weight (out, in)): :math:`W = C U^T` with trained coefficients
    :math:`C` (out, r), Denil et al.'s :math:`V^T`. Backward: :math:`\\partial L / \\partial C =
    (\\partial L / \\partial W)\\, U`. The initial coefficients are the least-squares fit of the
    layer's current weight, :math:`C = W U (U^T U)^{+}`. Stored tensors:
    ``params["coefficients"]`` and ``buffers["dictionary"]``. A deployed file stores both
    (the dictionary could instead be regenerated from a seed or the chosen pixels, which is
    Denil et al.'s saving; we count only :math:`C` as the learned parameters).

    References
    ----------
    .. [1] Denil, M., Shakibi, B., Dinh, L., Ranzato, M. and de Freitas, N. (2013) Predicting
       parameters in deep learning. NeurIPS, 2148-2156.

    Examples
    --------
    >>> from refimpl.nn import Linear
    >>> from refimpl.lowrank import Predicted, random_dictionary
    >>> U = random_dictionary(64, 8, rng=0)
    >>> layer = Linear(64, 10, rng=0).parametrize("weight", Predicted(U))
    >>> sorted(k for k, _ in layer.named_parameters()), layer.weight.shape
    (['bias', 'weight.coefficients'], (10, 64))
    """

    uses_input = False  # the weight is rebuilt from the coefficients and the dictionary
    file_name = "predicted"

    def __init__(self, dictionary: np.ndarray) -> None:
        self.dictionary = check_tensor(dictionary, "dictionary", min_ndim=2)
        if self.dictionary.ndim != 2:
            raise ValueError(f"dictionary must have shape (in_features, r), got "
                             f"{self.dictionary.shape}")  # fmt: skip

    @property
    def rank(self) -> int:
        return int(self.dictionary.shape[1])

    def init(self, x: np.ndarray) -> tuple[Arrays, Arrays]:
        if x.ndim != 2 or x.shape[1] != self.dictionary.shape[0]:
            raise ValueError(f"dictionary has {self.dictionary.shape[0]} rows but the weight has "
                             f"shape {x.shape} (expected (out, {self.dictionary.shape[0]}))")
        U = self.dictionary
        coefficients = np.linalg.lstsq(U, x.astype(np.float64).T, rcond=None)[0].T
        return {"coefficients": coefficients.astype(x.dtype)}, {"dictionary": U.astype(x.dtype)}

    def materialize(self, x: np.ndarray, params: Arrays, buffers: Arrays) -> np.ndarray:
        return params["coefficients"] @ buffers["dictionary"].T

    def pullback(
        self, grad: np.ndarray, x: np.ndarray, params: Arrays, buffers: Arrays
    ) -> tuple[None, Arrays]:
        return None, {"coefficients": (grad @ buffers["dictionary"]).astype(
            params["coefficients"].dtype)}  # fmt: skip

    def deploy(
        self, x: np.ndarray, w: np.ndarray, params: Arrays, buffers: Arrays, keep: np.ndarray
    ) -> Deployed:
        return Deployed(floats={"coefficients": params["coefficients"],
                                "dictionary": buffers["dictionary"]})  # fmt: skip

    @classmethod
    def undeploy(cls, deployed: Deployed, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
        w = deployed.floats["coefficients"].astype(np.float64) @ deployed.floats[
            "dictionary"].astype(np.float64).T  # fmt: skip
        return w.reshape(shape)[np.asarray(keep, dtype=bool).reshape(shape)]

    def __repr__(self) -> str:
        return f"Predicted(rank={self.rank})"
