"""The package as a whole: public names of the contract, import cost, layering."""

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

import bnlib

# design.md §3: the public names and their signatures.
CONTRACT = {
    "center": ["x"],
    "standardize": ["x", "eps"],
    "min_max_scale": ["x", "feature_range"],
    "covariance": ["x"],
    "whitening_matrix": ["x", "method", "eps"],
    "pca_whiten": ["x", "eps"],
    "zca_whiten": ["x", "eps"],
    "decorrelate": ["x"],
    "batchnorm_forward": ["x", "gamma", "beta", "eps"],
    "batchnorm_backward": ["dy", "cache"],
    "batchnorm_backward_graph": ["dy", "cache"],
    "batchnorm_inference": ["x", "gamma", "beta", "running_mean", "running_var", "eps"],
    "update_running_stats": [
        "running_mean", "running_var", "batch_mean", "batch_var", "n", "momentum", "num_batches_tracked",
    ],
    "population_statistics": ["batches"],
    "fold_batchnorm": ["weight", "bias", "gamma", "beta", "running_mean", "running_var", "eps"],
    "sigmoid": None,
    "relu": None,
    "sigmoid_grad": None,
    "tanh_grad": None,
    "relu_grad": None,
    "numerical_gradient": ["f", "x", "dout", "h"],
    "relative_error": ["a", "b"],
}

DEFAULTS = {
    ("standardize", "eps"): 0.0,
    ("min_max_scale", "feature_range"): (0.0, 1.0),
    ("whitening_matrix", "method"): "zca",
    ("whitening_matrix", "eps"): 1e-5,
    ("pca_whiten", "eps"): 1e-5,
    ("zca_whiten", "eps"): 1e-5,
    ("batchnorm_forward", "eps"): 1e-5,
    ("batchnorm_inference", "eps"): 1e-5,
    ("update_running_stats", "momentum"): 0.1,
    ("fold_batchnorm", "eps"): 1e-5,
    ("numerical_gradient", "h"): 1e-5,
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_names_and_signatures(name):
    func = getattr(bnlib, name)
    assert callable(func)
    assert func.__doc__ and "Parameters" in func.__doc__ or name in {"sigmoid", "relu", "sigmoid_grad", "tanh_grad", "relu_grad"}
    expected = CONTRACT[name]
    if expected is None:
        return
    params = inspect.signature(func).parameters
    assert list(params) == expected
    for (fname, pname), default in DEFAULTS.items():
        if fname == name:
            assert params[pname].default == default


def test_num_batches_tracked_is_keyword_only():
    param = inspect.signature(bnlib.update_running_stats).parameters["num_batches_tracked"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY


def test_cache_exposes_mean_and_var():
    x = np.arange(12.0).reshape(4, 3)
    _, cache = bnlib.batchnorm_forward(x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(cache.mean, x.mean(axis=0))
    np.testing.assert_allclose(cache.var, x.var(axis=0))
    assert cache.mean.shape == cache.var.shape == (3,)


def test_initialisers_need_a_generator():
    rng = np.random.default_rng(0)
    w = bnlib.init.he_normal(4, 3, rng)
    assert w.shape == (3, 4)
    with pytest.raises(TypeError):
        bnlib.init.he_normal(4, 3, 0)


_IMPORT_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import bnlib
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "modules": sorted(m.split(".")[0] for m in sys.modules)}))
"""


def _import_probe():
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_core_import_is_numpy_only():
    modules = set(_import_probe()["modules"])
    for heavy in ("torch", "matplotlib", "ipywidgets", "sklearn", "scipy", "IPython"):
        assert heavy not in modules, f"import bnlib pulled in {heavy}"


def test_layers_do_not_leak_upwards():
    import pathlib

    core = ["_checks", "activations", "batchnorm", "gradcheck", "init", "scaling", "whitening"]
    root = pathlib.Path(bnlib.__file__).parent
    for name in core:
        text = (root / f"{name}.py").read_text()
        for banned in ("import torch", "import matplotlib", "import ipywidgets", "from . import viz", "from .nn"):
            assert banned not in text, f"bnlib/{name}.py contains {banned!r}"
