"""The self-validated data-consistency weight (:meth:`SliceProblem.dc_weight`).

Pinned on a small simulated slice (finer-grid simulation; the reference is the RSS of the noise-free
fully sampled k-space, so the measurements agree with it up to their noise): the truth itself
predicts the held-out samples best and keeps its values; a slightly scaled truth gets the step that
predicts them best, which restores part of its intensity; a prior far from the truth gets a step
that brings it much closer.
"""
import math

import numpy as np
import pytest
import torch

from tttmedical.core.metrics import psnr
from tttmedical.recon.domains import brain_slices
from tttmedical.recon.masks import make_mask
from tttmedical.recon.problem import NO_STEP, make_problem
from tttmedical.recon.simulate import simulate_kspace


@pytest.fixture(scope="module")
def case():
    image = brain_slices(1, 96, 0.5, 0.5)
    sim = simulate_kspace(image, n_coils=4, noise=0.005, seed=1)
    mask = make_mask("equispaced", (96, 96), 2.0, 0.08, seed=1)
    problem = make_problem(torch.from_numpy(sim.kspace[0] * mask), torch.from_numpy(sim.maps), mask, seed=1)
    truth = torch.from_numpy(sim.truth[0])
    return problem, truth, np.abs(sim.truth[0]), problem.dc_scores(truth)


def _psnr(reference, image):
    return psnr(reference, image.abs().numpy(), float(reference.max()))


def test_close_prior_keeps_its_values(case):
    problem, truth, reference, scores = case
    assert min(scores["errors"], key=scores["errors"].get) == NO_STEP   # every step only adds noise
    assert scores["choice"] == NO_STEP
    assert _psnr(reference, problem.data_consistent(truth)) == _psnr(reference, truth)


def test_small_held_out_gain_is_taken_and_helps(case):
    problem, truth, reference, _ = case
    scaled = 0.93 * truth
    scores = problem.dc_scores(scaled)
    best = min((c for c in scores["errors"] if c != NO_STEP), key=scores["errors"].get)
    assert scores["errors"][best] < scores["errors"][NO_STEP] and scores["choice"] == best
    assert _psnr(reference, problem.data_consistent(scaled)) > _psnr(reference, scaled) + 1.0


def test_far_prior_is_pulled_to_the_data(case):
    problem, truth, reference, _ = case
    # the truth with its fine structure gone and a 30 % intensity error: a poor network output
    far = 0.7 * torch.from_numpy(np.fft.ifft2(np.fft.fft2(truth.numpy()) * _lowpass(truth.shape, 0.1)).astype(np.complex64))
    weight, _ = problem.dc_choice(far)
    assert math.isfinite(weight)
    assert _psnr(reference, problem.data_consistent(far)) > _psnr(reference, far) + 3.0


def _lowpass(shape, fraction):
    fy, fx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
    return (np.abs(fy) < fraction) & (np.abs(fx) < fraction)


def test_sparsity_is_chosen_where_the_prior_says_nothing(case):
    """With no prior (zeros) the step is compressed sensing: self-validation picks an L1-Haar weight,
    and it beats every conjugate-gradient (L2-only) candidate against the reference."""
    problem, truth, reference, _ = case
    nothing = torch.zeros_like(truth)
    weight, sparsity = problem.dc_choice(nothing)
    assert sparsity > 0
    chosen = _psnr(reference, problem.data_consistent(nothing, weight, sparsity))
    l2_only = max(_psnr(reference, problem.data_consistent(nothing, w, 0.0)) for w in (0.01, 0.03, 0.1))
    assert chosen > l2_only + 1.0, (chosen, l2_only)
