"""Low-rank factorization: surgeries that replace a layer by several smaller ones.

* :func:`svd_factorize`: a dense layer into two thin ones (truncated SVD; Xue et al. 2013,
  Sainath et al. 2013, Denton et al. 2014), rank by :func:`rank_for_energy` or
  :func:`rank_for_budget`.
* :func:`separable_factorize`: a k x k convolution into k x 1 then 1 x k (Jaderberg et al. 2014,
  scheme 2), refined on data.
* :func:`cp_als` (Kolda and Bader 2009) and :func:`cp_decompose_conv`: a convolution into four
  (Lebedev et al. 2015).
* :func:`partial_tucker` and :func:`tucker2_decompose_conv`: a convolution into 1x1, core, 1x1
  (Kim et al. 2016).
* :func:`separable_basis` and :func:`separable_basis_conv`: a filter bank through a shared basis
  of separable filters (Rigamonti et al. 2013; Jaderberg et al. 2014, scheme 1).
* :class:`Predicted`, :func:`kernel_ridge_dictionary`: a dense weight ``W = U V`` with a fixed,
  smooth dictionary ``U`` (Denil et al. 2013).
* :func:`monochromatic_approximation` and :func:`biclustered_approximation`: Denton et al.
  (2014).
* :func:`activation_aware_factorize`: the SVD of :math:`W L` (:math:`L L^T = X X^T`), which keeps
  a dense layer's outputs on calibration data rather than its weights.

Every factorization returns ordinary :class:`refimpl.nn.Linear` / :class:`refimpl.nn.Conv2d`
layers, so the cost model counts them and :func:`refimpl.nn.fit` fine-tunes them;
:func:`refimpl.surgery.substitute` (re-exported here) puts them into a model, and
:func:`refimpl.timing.time_inference` times the result. See chapter 7 of the book, "Low-rank
factorization".
"""

from ..surgery.substitute import layer_inputs, relative_output_error, substitute
from .activation_aware import (
    ActivationAwareSVD,
    activation_aware_compress,
    activation_aware_factorize,
    activation_aware_svd,
)
from .cp import (
    CPTensor,
    cp_als,
    cp_conv_layers,
    cp_decompose_conv,
    cp_to_tensor,
    fold,
    khatri_rao,
    unfold,
)
from .denton import (
    Biclustered,
    Monochromatic,
    biclustered_approximation,
    monochromatic_approximation,
)
from .predicted import Predicted, kernel_ridge_dictionary, pixel_coordinates, random_dictionary
from .separable import SeparablePair, separable_factorize, separable_filters, window_moments
from .separable_basis import (
    SeparableBasis,
    SeparableBasisLayers,
    separable_basis,
    separable_basis_conv,
)
from .svd import (
    energy_kept,
    rank_for_budget,
    rank_for_energy,
    svd_compress,
    svd_factorize,
    truncated_svd,
    weight_spectrum,
)
from .tucker import TuckerTensor, mode_dot, partial_tucker, tucker2_decompose_conv, tucker_to_tensor

__all__ = [
    "CPTensor",
    "SeparablePair",
    "TuckerTensor",
    "cp_als",
    "cp_conv_layers",
    "cp_decompose_conv",
    "cp_to_tensor",
    "energy_kept",
    "fold",
    "khatri_rao",
    "layer_inputs",
    "mode_dot",
    "partial_tucker",
    "rank_for_budget",
    "rank_for_energy",
    "relative_output_error",
    "separable_factorize",
    "separable_filters",
    "substitute",
    "svd_compress",
    "svd_factorize",
    "truncated_svd",
    "tucker2_decompose_conv",
    "tucker_to_tensor",
    "unfold",
    "weight_spectrum",
    "window_moments",
    "activation_aware_compress",
    "activation_aware_factorize",
    "activation_aware_svd",
    "ActivationAwareSVD",
    "Biclustered",
    "Monochromatic",
    "Predicted",
    "SeparableBasis",
    "SeparableBasisLayers",
    "biclustered_approximation",
    "kernel_ridge_dictionary",
    "monochromatic_approximation",
    "pixel_coordinates",
    "random_dictionary",
    "separable_basis",
    "separable_basis_conv",
]
