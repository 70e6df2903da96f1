"""Dark subtraction, cosmic-ray removal and accumulation averaging."""

import numpy as np
import pytest

from micropl.analysis.spectrum_preprocess import (
    combine_accumulations,
    frame_noise_rms,
    mean_frame,
    remove_cosmic_rays_spatial,
    remove_cosmic_rays_temporal,
    subtract_background_frame,
)
from micropl.errors import AnalysisInputError

N_PX = 1024


def _scene():
    """Broad QD line + two real narrow lines (FWHM 2.5 and 3 px) on a background."""
    x = np.arange(N_PX, dtype=float)
    broad = 300.0 / (1 + ((x - 500) / 60.0) ** 2)
    narrow = (2000.0 * np.exp(-4 * np.log(2) * ((x - 200) / 2.5) ** 2)
              + 800.0 * np.exp(-4 * np.log(2) * ((x - 800) / 3.0) ** 2))
    return 20.0 + broad + narrow


def _emccd(rng, clean, shape=()):
    n_e = rng.poisson(np.broadcast_to(clean, shape + clean.shape))
    return rng.gamma(np.maximum(n_e, 1), 1.0) * (n_e > 0)


def test_spatial_finds_spikes_and_keeps_narrow_lines():
    rng = np.random.default_rng(1)
    clean = _scene()
    frames = _emccd(rng, clean, (20,))
    spikes = rng.choice(np.r_[5:190, 210:790, 810:1019], size=(20, 4), replace=True)
    heights = rng.uniform(400, 5000, spikes.shape)
    for k in range(20):
        frames[k, spikes[k]] += heights[k]
    cleaned, mask = remove_cosmic_rays_spatial(frames)
    truth = np.zeros_like(mask)
    for k in range(20):
        truth[k, spikes[k]] = True
    assert mask[truth].all()                         # every spike found
    assert (mask & ~truth).sum() <= 2                # few false alarms in 20k pixels
    assert not mask[:, 195:206].any() and not mask[:, 795:806].any()   # real lines kept
    assert np.allclose(cleaned[:, 195:206], frames[:, 195:206])
    resid = cleaned[truth] - clean[np.nonzero(truth)[1]]
    assert np.all(np.abs(resid) < 6 * np.sqrt(2 * clean[np.nonzero(truth)[1]]) + 5)


def test_temporal_finds_spike_in_one_accumulation():
    rng = np.random.default_rng(2)
    clean = _scene()
    frames = _emccd(rng, clean, (5,))
    frames[2, 200] += 3000.0                        # a hit on top of a real narrow line
    frames[4, 640] += 500.0
    cleaned, mask = remove_cosmic_rays_temporal(frames)
    assert mask[2, 200] and mask[4, 640]
    assert mask.sum() <= 3
    assert abs(cleaned[2, 200] - clean[200]) < 6 * np.sqrt(2 * clean[200])
    two, mask2 = remove_cosmic_rays_temporal(frames[[0, 4]])
    assert mask2[1, 640] and two[1, 640] == frames[0, 640]
    with pytest.raises(AnalysisInputError):
        remove_cosmic_rays_temporal(frames[:1])


def test_background_subtraction_propagates_variance():
    rng = np.random.default_rng(3)
    dark_level = 300.0 + 5 * np.sin(np.arange(N_PX) / 50)
    darks = dark_level + rng.normal(0, 4.0, (50, N_PX))
    mean, var_mean = mean_frame(darks)
    assert np.allclose(var_mean.mean(), 16.0 / 50, rtol=0.1)
    clean = _scene()
    raw = dark_level + _emccd(rng, clean) + rng.normal(0, 4.0, N_PX)
    corrected, variance = subtract_background_frame(raw, mean, background_variance=var_mean,
                                                    noise_factor=2.0, read_noise=4.0)
    assert np.allclose(variance, 2 * np.maximum(corrected, 0) + 16 + var_mean, rtol=1e-6)
    pull = (corrected - clean) / np.sqrt(variance)
    assert 0.85 < pull.std() < 1.15 and abs(pull.mean()) < 0.1
    with pytest.raises(AnalysisInputError, match="shape"):
        subtract_background_frame(raw, mean[:10])


def test_combine_sum_and_mean():
    rng = np.random.default_rng(4)
    clean = _scene()
    frames = _emccd(rng, clean, (8,))
    total, var_total = combine_accumulations(frames, mode="sum")
    mean, var_mean = combine_accumulations(frames, mode="mean")
    assert np.allclose(total, frames.sum(axis=0)) and np.allclose(mean * 8, total)
    assert np.allclose(var_mean * 64, var_total)
    pull = (total - 8 * clean) / np.sqrt(var_total)
    assert 0.85 < pull.std() < 1.15
    with pytest.raises(AnalysisInputError):
        combine_accumulations(frames, mode="median")


def _dark(rng, shape, read_noise=1.2, cic_per_px=0.05, gain_e=30.0):
    """Read noise plus clock-induced charge through an EM register (skewed), in e."""
    cic = rng.poisson(cic_per_px, shape)
    return rng.normal(0.0, read_noise, shape) + rng.gamma(np.maximum(cic, 1), gain_e) \
        * (cic > 0) / gain_e * 3.0


@pytest.mark.parametrize("n_frames", [2, 5])
@pytest.mark.parametrize("cic_per_px, tolerance", [(0.0, 0.02), (0.05, 0.06)])
def test_frame_noise_rms_reads_the_true_noise(n_frames, cic_per_px, tolerance):
    rng = np.random.default_rng(7)
    truth = float(np.std(_dark(rng, (2_000_000,), cic_per_px=cic_per_px)))  # brute force
    estimates, medians = [], []
    for _ in range(40):
        frames = _dark(rng, (n_frames, N_PX), cic_per_px=cic_per_px)
        frames[0, rng.integers(0, N_PX, 3)] += 500.0  # cosmic rays
        estimates.append(frame_noise_rms(frames))
        medians.append(np.median(frames.std(axis=0, ddof=1)))
    assert np.mean(estimates) == pytest.approx(truth, rel=tolerance)
    assert np.mean(medians) < 0.95 * truth  # the median of per-pixel σ reads low


def test_frame_noise_rms_refuses_a_single_frame():
    with pytest.raises(AnalysisInputError, match="at least 2 frames"):
        frame_noise_rms(np.zeros((1, 10)))
