"""Calibration: K for a target end-to-end gain, LSUV layer by layer, exact reproduction by plan.apply()."""

import copy
import math

import pytest
import torch

import depthinit as di
from depthinit.applications.models import mlp
from depthinit.calibrate import _forward_vars, calibrate
from depthinit.probe import default_modules

DEPTH, WIDTH = 54, 128  # the 54-layer ReLU MLP of arXiv 2509.05018 (width 128 keeps the test fast)


pytestmark = pytest.mark.usefixtures("one_thread")


def _x(seed, batch=128, features=WIDTH):
    return torch.randn(batch, features, generator=torch.Generator().manual_seed(seed))


def _variances(model, x):
    names = default_modules(model)
    v = _forward_vars(model, x, names)
    return [v[n] for n in names]


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.fixture(scope="module")
def relu54():
    return mlp(DEPTH, WIDTH)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_lsuv_keeps_54_layers_within_2x_of_target(relu54, distribution):
    model = copy.deepcopy(relu54)
    x = _x(1)
    p = calibrate(model, x, target=1.0, mode="lsuv", scheme="he", distribution=distribution, seed=3)
    assert isinstance(p, di.InitPlan) and p.seed == 3
    # on the calibration batch: every layer within tol (2%) of the target, up to the few-ulp difference
    # between the in-place rescaling and the exact refill from the plan
    v = _variances(model, x)
    assert all(abs(vi - 1) <= 0.02 + 1e-5 for vi in v), v
    # plan.apply() on a fresh copy gives exactly the calibrated weights (same seed, calibrated stds)
    fresh = copy.deepcopy(relu54)
    p.apply(fresh)
    assert _same_weights(fresh, model)
    # on a held-out batch from the same distribution: within 2x of the target at every depth (measured:
    # 0.92..1.06; the 128-sample calibration batch fixes each layer's scale up to sampling noise)
    held = _variances(fresh, _x(2))
    assert all(0.5 < vi < 2 for vi in held), held
    # the plan says what was done
    assert all("lsuv x" in r.note for r in p.rows if r.name.endswith("weight"))


def test_lsuv_target_profile_and_sequence():
    model = mlp(12, 64)
    x = _x(1, 128, 64)
    prof = lambda lyr, L: 2.0 ** (lyr / L)
    calibrate(model, x, target=prof, mode="lsuv", scheme="xavier")
    for lyr, v in enumerate(_variances(model, x), start=1):
        assert v == pytest.approx(prof(lyr, 12), rel=0.021)
    seq = [0.5 + 0.1 * i for i in range(12)]
    calibrate(model, x, target=seq, mode="lsuv", scheme="he", distribution="uniform", tol=0.005)
    assert _variances(model, x) == pytest.approx(seq, rel=0.006)


@pytest.mark.parametrize("target", [math.e, 0.1])
def test_K_reaches_the_target_gain_on_54_layers(relu54, target):
    model = copy.deepcopy(relu54)
    x = _x(1)
    p = calibrate(model, x, target=target, mode="K", distribution="uniform", seed=1)
    v = _variances(model, x)
    assert v[-1] / v[0] == pytest.approx(target, rel=0.02 + 1e-5)
    fresh = copy.deepcopy(relu54)
    p.apply(fresh)
    assert _same_weights(fresh, model)
    # ReLU with zero biases is positively homogeneous: the gain of this draw is exactly e^K / m_1 times
    # the gain at K = 0, so the solved K matches log(target / gain_0) + log(m_1) to the tolerance
    base = copy.deepcopy(relu54)
    di.plan(base, "depth_aware", K=0.0, distribution="uniform", seed=1).apply()
    v0 = _variances(base, x)
    K = p.options["K"]
    predicted = v0[-1] / v0[0] * math.exp(K * (1 - 2 / (DEPTH * (DEPTH + 1))))
    assert predicted == pytest.approx(target, rel=0.021)
    # and at every depth the profile is this draw's K=0 profile times the ramp's multipliers m_2..m_l
    # (homogeneity again), up to fp32 rounding of the weights and activations (~1e-7 per layer, compounding
    # over 54 layers to ~1e-5; measured <= 2e-6): 1e-4
    ms = [di.schemes.depth_multiplier(lyr, DEPTH, K) for lyr in range(1, DEPTH + 1)]
    for lyr in range(1, DEPTH):
        expect = v0[lyr] / v0[0] * math.prod(ms[1 : lyr + 1])
        assert (v[lyr] / v[0]) / expect == pytest.approx(1, abs=1e-4)


def test_K_secant_on_a_saturating_net():
    """tanh saturates: the gain is not e^K, the secant / regula falsi iterations must find K."""
    model = mlp(24, 64, act="tanh")
    x = _x(4, 128, 64)
    calibrate(model, x, target=0.5, mode="K", nonlinearity="tanh", tol=0.01)
    v = _variances(model, x)
    assert v[-1] / v[0] == pytest.approx(0.5, rel=0.0101)
    p2 = calibrate(copy.deepcopy(model), x, target=0.5, mode="K", nonlinearity="tanh", schedule="linear", tol=0.01)
    assert p2.options["schedule"] == "linear" and p2.options["K"] > -1


def test_K_fails_clearly_when_not_converged():
    model = mlp(6, 32, act="tanh")  # tanh: the first secant step cannot land on the target
    with pytest.raises(RuntimeError, match="no K reached the target gain 1e\\+06 within 2 evaluations; best K="):
        calibrate(model, _x(0, 64, 32), target=1e6, mode="K", nonlinearity="tanh", max_iter=2)


def test_bad_input():
    model = mlp(4, 16)
    x = _x(0, 8, 16)
    with pytest.raises(ValueError, match="unknown calibration mode"):
        calibrate(model, x, mode="magic")
    with pytest.raises(ValueError, match="needs a scheme with a K option"):
        calibrate(model, x, mode="K", scheme="he")
    with pytest.raises(ValueError, match="schedule that depends on K"):
        calibrate(model, x, mode="K", schedule="constant")
    with pytest.raises(ValueError, match="target gain must be a finite number > 0"):
        calibrate(model, x, target=0.0)
    with pytest.raises(ValueError, match="one per layer"):
        calibrate(model, x, target=[1.0, 1.0], mode="lsuv")
    with pytest.raises(ValueError, match="zero or non-finite"):
        calibrate(model, x, mode="lsuv", scheme="zeros")
    with pytest.raises(ValueError, match="tol"):
        calibrate(model, x, tol=0)
