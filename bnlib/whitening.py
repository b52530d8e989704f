"""Covariance, decorrelation and whitening (PCA, ZCA, Cholesky) of a data matrix.

``x`` has shape ``(n_samples, n_features)``; a whitening transform is a matrix
``W`` of shape ``(n_features, n_features)`` such that ``y = (x - mean) @ W.T``
has identity covariance. The three classic choices differ only by a rotation
of ``y`` (Kessy, Lewin & Strimmer, 2018).

Conventions, stated once for the whole module:

* the covariance is biased (divided by ``n_samples``), like Batch
  Normalization's batch variance;
* ``eps`` is added to the covariance's diagonal (equivalently to every
  eigenvalue) before inverting, like BN's ``eps``; the output covariance is
  then the identity up to ``eps``;
* eigen-components are sorted by decreasing variance (eigenvalue) and every
  eigenvector's sign is fixed so that its entry of largest absolute value is
  positive (the first such entry on ties), so results are deterministic;
* statistics and decompositions are computed in float64 and the results cast
  back to ``x``'s dtype (float32 in, float32 out);
* ``x`` is first divided by a power of two ``2**e`` near its largest ``|x|``
  (or near ``sqrt(eps)`` if that is larger: the two magnitudes that meet in
  ``Sigma + eps I``), which is exact (no digit changes), so that squares
  neither overflow nor underflow; results are scaled back
  (``Sigma_x = 4**e Sigma_u``, ``eps_u = eps / 4**e``, ``W_x = W_u / 2**e``).
  A result that the dtype cannot hold (the covariance of float32 data beyond
  about 1.8e19) is a ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from bnlib._checks import check_2d, check_eps, check_no_overflow

__all__ = [
    "covariance",
    "whitening_matrix",
    "pca_whiten",
    "zca_whiten",
    "decorrelate",
]

WHITENING_METHODS = ("pca", "zca", "cholesky")


def _scaled(x, eps=0.0):
    """``(u, e)``: ``x`` in float64 divided by ``2**e`` (exactly), ``max|u| < 1``, ``eps / 4**e < 1``."""
    x64 = x.astype(np.float64, copy=False)
    e = int(np.frexp(max(np.abs(x64).max(), np.sqrt(eps)))[1])
    return np.ldexp(x64, -e), e


def _centred_covariance(x64):
    """Mean and biased covariance of a float64 matrix, exactly symmetric."""
    mean = x64.mean(axis=0)
    centred = x64 - mean
    cov = centred.T @ centred / x64.shape[0]
    return mean, (cov + cov.T) / 2


def _sorted_eigh(cov):
    """Eigenvalues (decreasing) and eigenvectors (columns, sign-fixed) of ``cov``.

    Each eigenvector's entry of largest absolute value is made positive.
    Round-off can make the eigenvalues of a singular covariance slightly
    negative; they are clipped to 0.
    """
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    eigvals = np.clip(eigvals[order], 0.0, None)
    eigvecs = eigvecs[:, order]
    pivots = np.argmax(np.abs(eigvecs), axis=0)
    signs = np.sign(eigvecs[pivots, np.arange(eigvecs.shape[1])])
    signs[signs == 0] = 1.0
    return eigvals, eigvecs * signs


def _check_invertible(eigvals, eps_u, eps):
    """Refuse to invert a (numerically) singular ``Sigma + eps I``.

    ``eigvals`` and ``eps_u`` are in the units of the scaled data. An ``eps``
    below the round-off of the largest eigenvalue does not make a singular
    covariance invertible.
    """
    tol = max(eigvals[0], np.finfo(np.float64).tiny) * eigvals.size * np.finfo(np.float64).eps
    if eigvals[-1] + eps_u > tol:
        return
    if eps > 0:
        raise ValueError(
            f"Whitening needs an invertible Sigma + eps * I, but eps={eps!r} vanishes "
            "against the scale of x and its covariance is singular (a constant or "
            "linearly dependent feature, or fewer samples than features). Rescale x "
            "or pass a larger eps."
        )
    raise ValueError(
        "Whitening with eps=0 needs an invertible covariance, got a singular "
        f"one (eigenvalues from {eigvals[0]:.3g} down to {eigvals[-1]:.3g} after "
        "scaling x to max |x| < 1; a constant or linearly dependent feature, or "
        "fewer samples than features). Pass eps > 0, e.g. the default eps=1e-5."
    )


def covariance(x):
    """Biased covariance matrix of the columns of ``x``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row.

    Returns
    -------
    cov : ndarray of shape (n_features, n_features)
        Symmetric covariance matrix in ``x``'s float dtype.

    Notes
    -----
    ``cov = (x - mean).T @ (x - mean) / n_samples``: divided by ``N``, not
    ``N - 1`` (``np.cov(x, rowvar=False, bias=True)``). Computed from centred
    values, in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.whitening import covariance
    >>> covariance(np.array([[0.0, 0.0], [2.0, 4.0]]))
    array([[1., 2.],
           [2., 4.]])
    """
    x = check_2d(x, what="Covariance")
    u, e = _scaled(x)
    _, cov_u = _centred_covariance(u)
    with np.errstate(over="ignore"):
        cov = np.ldexp(cov_u, 2 * e).astype(x.dtype, copy=False)
    return check_no_overflow(cov, "The covariance")


def whitening_matrix(x, method="zca", eps=1e-5):
    """Whitening matrix ``W`` and mean of ``x``: ``(x - mean) @ W.T`` is white.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row; at least 2 samples.
    method : {"zca", "pca", "cholesky"}, default "zca"
        Which whitening transform (see Notes).
    eps : float, default 1e-5
        Non-negative number added to every eigenvalue of the covariance
        (``Sigma + eps * I``). With ``eps=0`` the covariance must be
        invertible.

    Returns
    -------
    W : ndarray of shape (n_features, n_features)
        Whitening matrix, in ``x``'s float dtype.
    mean : ndarray of shape (n_features,)
        Column means of ``x``, in ``x``'s float dtype.

    Notes
    -----
    With the biased covariance ``Sigma = U diag(lam) U^T`` (eigenvalues
    ``lam`` in decreasing order, eigenvector signs fixed so that each column
    of ``U`` has its largest-magnitude entry positive):

    * PCA: ``W = diag(1 / sqrt(lam + eps)) U^T``. Rotates onto the principal
      axes, then rescales each to unit variance; whitened feature ``k`` is
      principal component ``k``.
    * ZCA (Mahalanobis): ``W = U diag(1 / sqrt(lam + eps)) U^T``, symmetric,
      ``W = (Sigma + eps I)^(-1/2)``. Rotates back after rescaling, so the
      output stays as close as possible to the centred input.
    * Cholesky: ``W = L^(-1)`` with ``Sigma + eps I = L L^T``;
      lower-triangular.

    In every case ``W^T W = (Sigma + eps I)^(-1)`` and the covariance of
    ``(x - mean) @ W.T`` is the identity when ``eps = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.whitening import whitening_matrix, covariance
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 2)) @ np.array([[2.0, 0.0], [1.5, 0.5]])
    >>> W, mean = whitening_matrix(x, method="zca", eps=0.0)
    >>> W.shape, mean.shape
    ((2, 2), (2,))
    >>> bool(np.allclose(covariance((x - mean) @ W.T), np.eye(2)))
    True
    """
    if not isinstance(method, str) or method not in WHITENING_METHODS:
        raise ValueError(
            f"method must be one of {', '.join(repr(m) for m in WHITENING_METHODS)}, "
            f"got {method!r}"
        )
    x = check_2d(x, min_samples=2, what="Whitening")
    eps = check_eps(eps)
    return _whitening_matrix(x, method, eps)


def _unit_whitening_matrix(u, method, eps_u, eps):
    """Whitening matrix and mean of scaled float64 data ``u`` (see the module's notes)."""
    mean, cov = _centred_covariance(u)
    eigvals, eigvecs = _sorted_eigh(cov)
    _check_invertible(eigvals, eps_u, eps)
    if method == "cholesky":
        chol = np.linalg.cholesky(cov + eps_u * np.eye(cov.shape[0]))
        # The inverse of a lower-triangular matrix is lower-triangular; tril
        # removes the round-off that a general inverse leaves above the diagonal.
        W = np.tril(np.linalg.inv(chol))
    else:
        inv_sqrt = 1.0 / np.sqrt(eigvals + eps_u)
        W = inv_sqrt[:, None] * eigvecs.T
        if method == "zca":
            W = eigvecs @ W
            W = (W + W.T) / 2
    return W, mean


def _whitening_matrix(x, method, eps):
    """:func:`whitening_matrix` on an already validated float array."""
    u, e = _scaled(x, eps)
    # Sigma_x + eps I = 4**e (Sigma_u + eps / 4**e I), so W_x = W_u / 2**e
    W, mean = _unit_whitening_matrix(u, method, np.ldexp(eps, -2 * e), eps)
    with np.errstate(over="ignore", under="ignore"):
        W = np.ldexp(W, -e).astype(x.dtype, copy=False)
    check_no_overflow(W, "The whitening matrix")
    return W, np.ldexp(mean, e).astype(x.dtype, copy=False)


def _whiten(x, method, eps):
    x = check_2d(x, min_samples=2, what="Whitening")
    eps = check_eps(eps)
    u, e = _scaled(x, eps)
    # (x - mean_x) @ W_x.T = (u - mean_u) @ W_u.T: the scale cancels
    W, mean = _unit_whitening_matrix(u, method, np.ldexp(eps, -2 * e), eps)
    with np.errstate(over="ignore"):
        y = ((u - mean) @ W.T).astype(x.dtype, copy=False)
    return check_no_overflow(y, "Whitening")


def pca_whiten(x, eps=1e-5):
    """PCA-whiten ``x``: principal components rescaled to unit variance.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row; at least 2 samples.
    eps : float, default 1e-5
        Non-negative number added to every eigenvalue before inverting.

    Returns
    -------
    y : ndarray of shape (n_samples, n_features)
        Whitened data in ``x``'s float dtype; column ``k`` is the ``k``-th
        principal component (decreasing variance) divided by its std.

    Notes
    -----
    ``y = (x - mean) @ U diag(1 / sqrt(lam + eps))`` with the biased
    covariance ``Sigma = U diag(lam) U^T`` (see :func:`whitening_matrix` for
    the order and sign convention). ``cov(y) = diag(lam / (lam + eps))``,
    the identity up to ``eps``. scikit-learn's ``PCA(whiten=True)`` divides
    by the unbiased variances instead: its output is ours times
    ``sqrt((n - 1) / n)``, up to each component's sign.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.whitening import pca_whiten, covariance
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 2)) @ np.array([[2.0, 0.0], [1.5, 0.5]])
    >>> bool(np.allclose(covariance(pca_whiten(x, eps=0.0)), np.eye(2)))
    True
    """
    return _whiten(x, "pca", eps)


def zca_whiten(x, eps=1e-5):
    """ZCA-whiten ``x``: unit covariance, as close as possible to the input.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row; at least 2 samples.
    eps : float, default 1e-5
        Non-negative number added to every eigenvalue before inverting.

    Returns
    -------
    y : ndarray of shape (n_samples, n_features)
        Whitened data in ``x``'s float dtype.

    Notes
    -----
    ``y = (x - mean) @ (Sigma + eps I)^(-1/2)`` with the biased covariance
    ``Sigma``; ``W = U diag(1 / sqrt(lam + eps)) U^T`` is symmetric. Of all
    whitening transforms, ZCA minimises the mean squared distance between
    ``y`` and the centred input (Kessy, Lewin & Strimmer, 2018), so the
    whitened features keep their meaning (an image stays an image).

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.whitening import zca_whiten, covariance
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 2)) @ np.array([[2.0, 0.0], [1.5, 0.5]])
    >>> bool(np.allclose(covariance(zca_whiten(x, eps=0.0)), np.eye(2)))
    True
    """
    return _whiten(x, "zca", eps)


def decorrelate(x):
    """Rotate centred ``x`` onto its principal axes, without rescaling.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Data matrix, one sample per row; at least 2 samples.

    Returns
    -------
    y : ndarray of shape (n_samples, n_features)
        Decorrelated data in ``x``'s float dtype: column ``k`` is the ``k``-th
        principal component, its variance the ``k``-th largest eigenvalue.

    Notes
    -----
    ``y = (x - mean) @ U`` with the biased covariance ``Sigma = U diag(lam) U^T``
    (eigenvalues decreasing, each eigenvector's largest-magnitude entry
    positive). ``cov(y) = diag(lam)``: the features are uncorrelated and the
    total variance ``trace(Sigma)`` is unchanged, because ``U`` is a rotation
    (or reflection). Standardising ``y`` afterwards gives PCA whitening.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.whitening import decorrelate, covariance
    >>> x = np.array([[1.0, 1.0], [-1.0, -1.0], [2.0, 2.0], [-2.0, -2.0]])
    >>> np.round(covariance(decorrelate(x)), 8)
    array([[5., 0.],
           [0., 0.]])
    """
    x = check_2d(x, min_samples=2, what="Decorrelation")
    u, e = _scaled(x)
    mean, cov = _centred_covariance(u)
    _, eigvecs = _sorted_eigh(cov)
    with np.errstate(over="ignore"):
        y = np.ldexp((u - mean) @ eigvecs, e).astype(x.dtype, copy=False)
    return check_no_overflow(y, "Decorrelation")
