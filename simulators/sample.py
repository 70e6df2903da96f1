"""The seeded virtual sample: CsPbBr3 QDs and aggregates spin-coated in polystyrene.

Everything every simulated instrument sees comes from one :class:`VirtualSample`.
The population is drawn once from the seed (:meth:`VirtualSample.from_settings`);
the time-dependent behaviour of each emitter — blinking and spectral diffusion —
is a deterministic function of ``(seed, emitter index, time)``, so two queries
of the same interval give the same answer whatever was asked before.

Models (numbers from ``PHYSICS.md``)
------------------------------------
* Positions: Poisson number of QDs over ``area_um`` at ``density_per_um2``, x and
  y uniform, z ~ N(0, ``z_spread_um``). Aggregates likewise at
  ``aggregates_per_um2``.
* Batches: the sample holds ``SampleSettings.film_batches`` (default: the
  paper's 7 nm and 14 nm batches, half each); each QD belongs to one batch, its
  label is the truth's ``batch``. ``layout: side_by_side`` (default): batch ``j``
  fills the stripe ``x ∈ width × [Σ_{i<j} f_i, Σ_{i≤j} f_i)`` (the paper measured
  each batch on its own film; with the same density everywhere a QD's neighbours
  are of its own batch, except at a stripe border). ``layout: mixed``: each QD's
  batch is drawn with the batches' ``fraction`` over the whole area.
* Edge length L ~ N(mean, spread·mean) of the QD's batch, clipped to
  [0.6, 1.6]·mean and ≥ 3 nm.
* Emission energy from confinement, ``E(L) = 2.383 eV + 5.2 eV·nm² / L²``
  (14 nm → 2.410 eV, 7 nm → 2.489 eV). Core/shell QDs are blue-shifted by a
  uniform 20–120 meV (the shell leaches the core and shrinks it).
* Lorentzian FWHM of a core-only QD: piecewise-linear in energy through
  70 meV @ 2.40 eV, 73 meV @ 2.41 eV, 100 meV @ 2.44 eV and 130 meV @ 2.50 eV
  (extrapolated with the end slopes), times a log-normal QD-to-QD scatter of
  15 % rms. Over both batches the FWHM rises ≈600 meV/eV (14 nm: mean ≈76 meV
  at 2.41 eV; 7 nm: mean ≈130 meV at 2.49 eV).
* Core/shell QDs: the shell removes the same share of the surface-phonon
  broadening at every size, so their FWHM follows the same trend, scaled:
  log-normal with median :data:`CORE_SHELL_FWHM_RATIO` (0.55) × the core-only
  trend at the QD's (blue-shifted) energy and :data:`CORE_SHELL_FWHM_SCATTER`
  (15 %) rms, never below :data:`MIN_FWHM_MEV` (:func:`core_shell_fwhm_cdf`).
  For the 14 nm batch the mean is ≈67 meV (paper: 60–70 meV) and the narrowest
  of ~300 core/shell QDs reaches 35–40 meV near 2.43 eV (paper: the record,
  35 meV at 2.44 eV, against 110 meV for a core-only QD there); 7 nm core/shell
  QDs, which emit at 2.51–2.61 eV, are ≈90 meV wide.
* Brightness (detected counts/s per APD at saturation, 10 MHz): log-normal with
  mean ``brightness_cps_mean`` and 50 % rms, clipped to [1/3, 10/3]·mean
  (1·10⁴–1·10⁵ cps for the default 3·10⁴).
* Lifetime log-uniform in ``lifetime_ns_range``. g²(0) uniform in 0.12–0.40
  (core-only) or 0.05–0.20 (core/shell).
* Aggregates: 5–20× a QD's brightness, bulk-like emission near 2.39 eV, broad
  (100–160 meV), g²(0) 0.85–1.0, no blinking and no spectral diffusion (many
  emitters average out); ``edge_nm`` is NaN.
* Blinking: a two-state telegraph process with exponential ON and OFF durations
  (means ``blink_on_s_mean`` / ``blink_off_s_mean``), stationary at t = 0.
* Spectral diffusion: an Ornstein–Uhlenbeck process of the peak energy, rms
  ``spectral_diffusion_mev`` and correlation time ``spectral_diffusion_tau_s``,
  sampled exactly on a 10 ms grid and linearly interpolated.

Determinism
-----------
Both processes are generated in fixed blocks of :data:`BLOCK_S` seconds of clock
time, block ``k`` of emitter ``i`` from ``np.random.default_rng([seed, i, k, stream])``.
The state at the start of a block is the state at the end of the previous one
(the blocks are chained, so the processes are exact Markov processes); chained
states are computed once, in order, and cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from scipy.special import ndtr

from micropl.simulators.settings import BackgroundSettings, SampleSettings

__all__ = [
    "VirtualSample",
    "confinement_energy_ev",
    "core_fwhm_mev",
    "core_shell_fwhm_mev",
    "core_shell_fwhm_cdf",
    "CORE_SHELL_FWHM_RATIO",
    "CORE_SHELL_FWHM_SCATTER",
    "FWHM_SCATTER",
    "MIN_FWHM_MEV",
    "AGGREGATE_BATCH",
    "stripe_index",
    "BLOCK_S",
    "DIFFUSION_DT_S",
]

#: Length of the blocks in which blinking and spectral diffusion are generated, s.
BLOCK_S = 10.0
#: Time step of the spectral-diffusion grid, s.
DIFFUSION_DT_S = 0.01

#: Log-normal rms of the QD-to-QD FWHM scatter of core-only QDs (PHYSICS.md: ±15 %).
FWHM_SCATTER = 0.15
#: Median core/shell FWHM as a share of the core-only trend at the same energy.
CORE_SHELL_FWHM_RATIO = 0.55
#: Log-normal rms of the core/shell FWHM around its median.
CORE_SHELL_FWHM_SCATTER = 0.15
#: No simulated core/shell line is narrower than this, meV (below the paper's 35 meV record).
MIN_FWHM_MEV = 33.0
#: The ``batch`` label of aggregates in :meth:`VirtualSample.truth`.
AGGREGATE_BATCH = "aggregate"

_E_BULK_EV = 2.383
_CONFINEMENT_EV_NM2 = 5.2
_FWHM_KNOTS_EV = np.array([2.40, 2.41, 2.44, 2.50])
_FWHM_KNOTS_MEV = np.array([70.0, 73.0, 100.0, 130.0])
_STREAM_BLINK = 1
_STREAM_DIFFUSION = 2
_CACHE_BLOCKS = 4096


def confinement_energy_ev(edge_nm):
    """Emission energy of a CsPbBr3 cube of edge ``edge_nm``: ``2.383 + 5.2 / L²`` eV.

    Parameters
    ----------
    edge_nm : float or array_like
        Edge length in nm.

    Returns
    -------
    float or ndarray
        Emission energy in eV, same shape.
    """
    edge = np.asarray(edge_nm, dtype=np.float64)
    return _E_BULK_EV + _CONFINEMENT_EV_NM2 / edge**2


def core_fwhm_mev(energy_ev):
    """Mean Lorentzian FWHM of a core-only QD at room temperature, in meV.

    Piecewise linear through the paper's values, 70 meV @ 2.40 eV, 73 meV @
    2.41 eV (the 14 nm batch), 100 meV @ 2.44 eV and 130 meV @ 2.50 eV,
    extrapolated with the end slopes (300 and 500 meV/eV) and never below 40 meV.

    Parameters
    ----------
    energy_ev : float or array_like
        Emission energy in eV.

    Returns
    -------
    float or ndarray
        FWHM in meV, same shape.
    """
    e = np.asarray(energy_ev, dtype=np.float64)
    k, w = _FWHM_KNOTS_EV, _FWHM_KNOTS_MEV
    lo_slope = (w[1] - w[0]) / (k[1] - k[0])
    hi_slope = (w[-1] - w[-2]) / (k[-1] - k[-2])
    out = np.interp(e, k, w)
    out = np.where(e < k[0], w[0] + lo_slope * (e - k[0]), out)
    out = np.where(e > k[-1], w[-1] + hi_slope * (e - k[-1]), out)
    return np.maximum(out, 40.0)


def core_shell_fwhm_mev(energy_ev):
    """Median Lorentzian FWHM of a core/shell QD at room temperature, in meV.

    :data:`CORE_SHELL_FWHM_RATIO` × :func:`core_fwhm_mev` at the same energy
    (55 meV at 2.44 eV, 72 meV at 2.50 eV).

    Parameters
    ----------
    energy_ev : float or array_like
        Emission energy (after the shell's blue shift) in eV.

    Returns
    -------
    float or ndarray
        FWHM in meV, same shape.
    """
    return CORE_SHELL_FWHM_RATIO * core_fwhm_mev(energy_ev)


def core_shell_fwhm_cdf(fwhm_mev, energy_ev):
    """Probability that a core/shell QD emitting at ``energy_ev`` is at most ``fwhm_mev`` wide.

    The model's distribution: log-normal around :func:`core_shell_fwhm_mev`
    with :data:`CORE_SHELL_FWHM_SCATTER` rms, and lines that would be narrower
    than :data:`MIN_FWHM_MEV` are :data:`MIN_FWHM_MEV` wide (so the CDF is 0
    below it).

    Parameters
    ----------
    fwhm_mev : float or array_like
        Linewidth in meV.
    energy_ev : float or array_like
        Emission energy in eV (broadcast against ``fwhm_mev``).

    Returns
    -------
    float or ndarray
        P(FWHM ≤ ``fwhm_mev``), between 0 and 1.
    """
    w = np.asarray(fwhm_mev, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = np.log(w / core_shell_fwhm_mev(energy_ev)) / CORE_SHELL_FWHM_SCATTER
    return np.where(w >= MIN_FWHM_MEV, ndtr(z), 0.0)


def _fractions(batches) -> np.ndarray:
    """The batches' fractions as probabilities (they add up to 1 within 1e-6)."""
    p = np.array([b.fraction for b in batches], dtype=np.float64)
    return p / p.sum()


def stripe_index(x_um, width_um: float, fractions) -> np.ndarray:
    """Index of the stripe along x each position falls in (the ``side_by_side`` layout).

    Parameters
    ----------
    x_um : array_like, shape (n,)
        x positions in µm, within ``[0, width_um]``.
    width_um : float
        Width of the populated area, µm.
    fractions : array_like, shape (k,)
        Shares of the area's width, in order from x = 0; they add up to 1.

    Returns
    -------
    ndarray of int64, shape (n,)
        0 … k − 1: stripe ``j`` spans ``width_um × [Σ_{i<j} f_i, Σ_{i≤j} f_i)``.
    """
    bounds = width_um * np.cumsum(np.asarray(fractions, dtype=np.float64))[:-1]
    return np.searchsorted(bounds, np.asarray(x_um, dtype=np.float64), side="right").astype(
        np.int64)


class VirtualSample:
    """A population of emitters with blinking and spectral diffusion.

    Build it with :meth:`from_settings` (a random, seeded population) or
    :meth:`single` (one QD with given properties, for reference spectra).

    Parameters
    ----------
    x_um, y_um, z_um : array_like, shape (n,)
        Emitter positions in µm.
    edge_nm : array_like, shape (n,)
        Cube edge length in nm (NaN for aggregates).
    core_shell, is_aggregate : array_like of bool, shape (n,)
        Emitter type.
    energy_ev : array_like, shape (n,)
        Mean emission energy in eV.
    fwhm_mev : array_like, shape (n,)
        Lorentzian FWHM in meV.
    brightness_cps : array_like, shape (n,)
        Detected counts/s per APD at saturation and 10 MHz.
    lifetime_ns : array_like, shape (n,)
        PL lifetime in ns.
    g2_0 : array_like, shape (n,)
        Intrinsic g²(0).
    blinks : array_like of bool, shape (n,), optional
        Whether each emitter blinks (default: all but aggregates).
    batch : array_like of str, shape (n,), optional
        Label of each emitter's batch (default: ``""``, no batch;
        :data:`AGGREGATE_BATCH` for aggregates).
    seed : int
        Seed of the time-dependent processes.
    area_um : (float, float)
        Populated area (width, height) starting at (0, 0), µm.
    blink_on_s_mean, blink_off_s_mean : float
        Mean ON and OFF durations in s.
    spectral_diffusion_mev : float
        rms of the peak-energy wandering in meV (0 = none).
    spectral_diffusion_tau_s : float
        Correlation time of the wandering in s.
    background : BackgroundSettings
        The polystyrene background.
    """

    def __init__(
        self,
        *,
        x_um,
        y_um,
        z_um,
        edge_nm,
        core_shell,
        is_aggregate,
        energy_ev,
        fwhm_mev,
        brightness_cps,
        lifetime_ns,
        g2_0,
        blinks=None,
        batch=None,
        seed: int = 0,
        area_um: tuple[float, float] = (40.0, 40.0),
        blink_on_s_mean: float = 0.3,
        blink_off_s_mean: float = 0.05,
        spectral_diffusion_mev: float = 3.0,
        spectral_diffusion_tau_s: float = 0.5,
        background: BackgroundSettings | None = None,
    ) -> None:
        f64 = np.float64
        self.x_um = np.asarray(x_um, dtype=f64).ravel()
        self.n = int(self.x_um.size)
        n = self.n

        def arr(value, dtype=f64) -> np.ndarray:
            a = np.asarray(value, dtype=dtype).ravel()
            if a.size != n:
                raise ValueError(f"virtual sample: expected {n} values, got {a.size}")
            return a

        self.y_um = arr(y_um)
        self.z_um = arr(z_um)
        self.edge_nm = arr(edge_nm)
        self.core_shell = arr(core_shell, bool)
        self.is_aggregate = arr(is_aggregate, bool)
        self.energy_ev = arr(energy_ev)
        self.fwhm_mev = arr(fwhm_mev)
        self.brightness_cps = arr(brightness_cps)
        self.lifetime_ns = arr(lifetime_ns)
        self.g2_0 = arr(g2_0)
        self.blinks = ~self.is_aggregate if blinks is None else arr(blinks, bool)
        self.batch = (np.where(self.is_aggregate, AGGREGATE_BATCH, "") if batch is None
                      else arr(batch, str))
        if np.any(self.fwhm_mev <= 0) or np.any(self.brightness_cps < 0):
            raise ValueError("virtual sample: FWHM must be > 0 and brightness ≥ 0")
        self.seed = int(seed)
        self.area_um = (float(area_um[0]), float(area_um[1]))
        self.blink_on_s_mean = float(blink_on_s_mean)
        self.blink_off_s_mean = float(blink_off_s_mean)
        self.spectral_diffusion_mev = float(spectral_diffusion_mev)
        self.spectral_diffusion_tau_s = float(spectral_diffusion_tau_s)
        self.background = background if background is not None else BackgroundSettings()
        self._lock = threading.Lock()
        # chained block-start states: emitter -> list (index = block) of states
        self._blink_start: dict[int, list[bool]] = {}
        self._diffusion_start: dict[int, list[float]] = {}
        self._block_cache: OrderedDict[tuple[int, int, int], object] = OrderedDict()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_settings(cls, s: SampleSettings) -> VirtualSample:
        """Draw a random population from the sample settings (deterministic in ``s.seed``).

        Parameters
        ----------
        s : SampleSettings
            Sample section of the setup.

        Returns
        -------
        VirtualSample
            QDs first, then aggregates.
        """
        rng = np.random.default_rng([s.seed, 0])
        width_um, height_um = s.area_um
        area = width_um * height_um
        n_qd = int(rng.poisson(s.density_per_um2 * area))
        n_agg = int(rng.poisson(s.aggregates_per_um2 * area))
        n = n_qd + n_agg
        x = rng.uniform(0.0, width_um, n)
        y = rng.uniform(0.0, height_um, n)
        z = rng.normal(0.0, s.z_spread_um, n) if s.z_spread_um > 0 else np.zeros(n)

        batches = s.film_batches
        if len(batches) == 1:
            which = np.zeros(n_qd, dtype=np.int64)
        elif s.layout == "mixed":
            which = rng.choice(len(batches), n_qd, p=_fractions(batches))
        else:
            which = stripe_index(x[:n_qd], width_um, _fractions(batches))
        mean_nm = np.array([b.edge_nm_mean for b in batches])[which]
        spread = np.array([b.edge_nm_spread for b in batches])[which]
        edge = rng.normal(mean_nm, spread * mean_nm, n_qd)
        edge = np.clip(edge, np.maximum(3.0, 0.6 * mean_nm), 1.6 * mean_nm)
        core_shell = rng.random(n_qd) < np.array([b.core_shell_fraction for b in batches])[which]
        shift_ev = np.where(core_shell, rng.uniform(0.020, 0.120, n_qd), 0.0)
        energy = confinement_energy_ev(edge) + shift_ev
        scatter = np.exp(rng.normal(0.0, FWHM_SCATTER, n_qd))
        fwhm_cs = np.maximum(core_shell_fwhm_mev(energy) *
                             np.exp(rng.normal(0.0, CORE_SHELL_FWHM_SCATTER, n_qd)), MIN_FWHM_MEV)
        fwhm = np.where(core_shell, fwhm_cs, core_fwhm_mev(energy) * scatter)
        sigma_ln = np.sqrt(np.log(1.0 + 0.5**2))
        bright = s.brightness_cps_mean * np.exp(rng.normal(-0.5 * sigma_ln**2, sigma_ln, n_qd))
        bright = np.clip(bright, s.brightness_cps_mean / 3.0, s.brightness_cps_mean * 10.0 / 3.0)
        lo_ns, hi_ns = sorted(s.lifetime_ns_range)
        lifetime = np.exp(rng.uniform(np.log(lo_ns), np.log(hi_ns), n))
        g2 = np.where(core_shell, rng.uniform(0.05, 0.20, n_qd), rng.uniform(0.12, 0.40, n_qd))

        # aggregates
        agg_energy = rng.normal(2.392, 0.008, n_agg)
        agg_fwhm = rng.uniform(100.0, 160.0, n_agg)
        agg_bright = s.brightness_cps_mean * rng.uniform(5.0, 20.0, n_agg)
        agg_g2 = rng.uniform(0.85, 1.0, n_agg)

        return cls(
            x_um=x,
            y_um=y,
            z_um=z,
            edge_nm=np.concatenate([edge, np.full(n_agg, np.nan)]),
            core_shell=np.concatenate([core_shell, np.zeros(n_agg, bool)]),
            is_aggregate=np.concatenate([np.zeros(n_qd, bool), np.ones(n_agg, bool)]),
            energy_ev=np.concatenate([energy, agg_energy]),
            fwhm_mev=np.concatenate([fwhm, agg_fwhm]),
            brightness_cps=np.concatenate([bright, agg_bright]),
            lifetime_ns=lifetime,
            g2_0=np.concatenate([g2, agg_g2]),
            batch=np.concatenate([np.array([b.name for b in batches])[which],
                                  np.full(n_agg, AGGREGATE_BATCH)]),
            seed=s.seed,
            area_um=s.area_um,
            blink_on_s_mean=s.blink_on_s_mean,
            blink_off_s_mean=s.blink_off_s_mean,
            spectral_diffusion_mev=s.spectral_diffusion_mev,
            spectral_diffusion_tau_s=s.spectral_diffusion_tau_s,
            background=s.background,
        )

    @classmethod
    def single(
        cls,
        *,
        x_um: float = 20.0,
        y_um: float = 20.0,
        z_um: float = 0.0,
        energy_ev: float = 2.41,
        fwhm_mev: float = 70.0,
        brightness_cps: float = 3.0e4,
        lifetime_ns: float = 5.0,
        g2_0: float = 0.1,
        core_shell: bool = False,
        blinking: bool = False,
        spectral_diffusion_mev: float = 0.0,
        seed: int = 1,
        background: BackgroundSettings | None = None,
        area_um: tuple[float, float] = (40.0, 40.0),
    ) -> VirtualSample:
        """A sample holding exactly one QD with the given properties.

        Meant for reference spectra whose truth is known exactly: by default the
        QD neither blinks nor wanders, so a spectrum's peak energy and FWHM are
        ``energy_ev`` and ``fwhm_mev``. The edge length is the one the
        confinement law gives for ``energy_ev`` (NaN above what it can reach).

        Parameters
        ----------
        x_um, y_um, z_um : float
            Position in µm (put it where the scanner points).
        energy_ev : float
            Peak energy in eV.
        fwhm_mev : float
            Lorentzian FWHM in meV.
        brightness_cps : float
            Detected counts/s per APD at saturation and 10 MHz.
        lifetime_ns, g2_0 : float
            PL lifetime in ns and intrinsic g²(0).
        core_shell, blinking : bool
            Emitter type, and whether it blinks.
        spectral_diffusion_mev : float
            rms wandering in meV (default 0).
        seed : int
            Seed of blinking and wandering.
        background : BackgroundSettings, optional
            Polystyrene background (default: the standard weak one).
        area_um : (float, float)
            Nominal sample area in µm.

        Returns
        -------
        VirtualSample
        """
        excess = energy_ev - _E_BULK_EV
        edge = np.sqrt(_CONFINEMENT_EV_NM2 / excess) if excess > 0 else np.nan
        return cls(
            x_um=[x_um], y_um=[y_um], z_um=[z_um], edge_nm=[edge], core_shell=[core_shell],
            is_aggregate=[False], energy_ev=[energy_ev], fwhm_mev=[fwhm_mev],
            brightness_cps=[brightness_cps], lifetime_ns=[lifetime_ns], g2_0=[g2_0],
            blinks=[blinking], seed=seed, area_um=area_um, blink_on_s_mean=0.3,
            blink_off_s_mean=0.05, spectral_diffusion_mev=spectral_diffusion_mev,
            background=background,
        )

    # ------------------------------------------------------------------ truth
    def truth(self) -> dict[str, np.ndarray]:
        """Every per-emitter array, keyed by name (units in the keys).

        ``batch`` holds text labels (e.g. ``"7nm"``, ``"14nm"``;
        :data:`AGGREGATE_BATCH` for aggregates), the others numbers or booleans.

        Returns
        -------
        dict of str to ndarray, each shape (n,)
        """
        return {
            "x_um": self.x_um.copy(),
            "y_um": self.y_um.copy(),
            "z_um": self.z_um.copy(),
            "edge_nm": self.edge_nm.copy(),
            "core_shell": self.core_shell.copy(),
            "is_aggregate": self.is_aggregate.copy(),
            "energy_ev": self.energy_ev.copy(),
            "fwhm_mev": self.fwhm_mev.copy(),
            "brightness_cps": self.brightness_cps.copy(),
            "lifetime_ns": self.lifetime_ns.copy(),
            "g2_0": self.g2_0.copy(),
            "blinks": self.blinks.copy(),
            "batch": self.batch.copy(),
        }

    # ------------------------------------------------------------------ cache
    def _cached(self, key: tuple[int, int, int], make):
        with self._lock:
            if key in self._block_cache:
                self._block_cache.move_to_end(key)
                return self._block_cache[key]
        value = make()
        with self._lock:
            self._block_cache[key] = value
            while len(self._block_cache) > _CACHE_BLOCKS:
                self._block_cache.popitem(last=False)
        return value

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.n:
            raise IndexError(f"virtual sample: emitter {index} does not exist (n = {self.n})")
        return index

    # ------------------------------------------------------------------ blinking
    def _blink_switches(self, index: int, block: int, state0: bool) -> np.ndarray:
        """Absolute switching times (s) inside block ``block`` starting in ``state0``."""

        def make() -> np.ndarray:
            rng = np.random.default_rng([self.seed, index, block, _STREAM_BLINK])
            t_start = block * BLOCK_S
            mean_cycle = self.blink_on_s_mean + self.blink_off_s_mean
            n_draw = int(2 * BLOCK_S / mean_cycle * 1.5) + 16
            means = np.empty(n_draw)
            first, second = ((self.blink_on_s_mean, self.blink_off_s_mean) if state0
                             else (self.blink_off_s_mean, self.blink_on_s_mean))
            means[0::2] = first
            means[1::2] = second
            times = t_start + np.cumsum(rng.exponential(1.0, n_draw) * means)
            while times[-1] < t_start + BLOCK_S:  # rare: draw more from the same stream
                more = np.empty(n_draw)
                parity = times.size % 2
                more[0::2] = first if parity == 0 else second
                more[1::2] = second if parity == 0 else first
                times = np.concatenate([times, times[-1] + np.cumsum(
                    rng.exponential(1.0, n_draw) * more)])
            return times[times < t_start + BLOCK_S]

        return self._cached((index, block, _STREAM_BLINK), make)

    def _blink_block_start(self, index: int, block: int) -> bool:
        """ON/OFF state at the start of ``block`` (blocks are chained from t = 0)."""
        with self._lock:
            states = self._blink_start.get(index)
            if states is None:
                rng = np.random.default_rng([self.seed, index, 0, 0])
                p_on = self.blink_on_s_mean / (self.blink_on_s_mean + self.blink_off_s_mean)
                states = [bool(rng.random() < p_on)]
                self._blink_start[index] = states
            known = len(states)
        state = states[known - 1]
        for k in range(known - 1, block):
            n_switch = self._blink_switches(index, k, state).size
            state = state ^ bool(n_switch % 2)
            with self._lock:
                if len(states) == k + 1:
                    states.append(state)
        return states[block]

    def on_intervals_s(self, index: int, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """ON intervals of emitter ``index`` within ``[t0_s, t1_s)``.

        Parameters
        ----------
        index : int
            Emitter index.
        t0_s, t1_s : float
            Clock-time interval in s (``t0_s ≥ 0``).

        Returns
        -------
        starts_s, stops_s : ndarray, shape (k,)
            Start and stop times (s) of the ON intervals, clipped to the query
            interval, ascending and non-overlapping. A non-blinking emitter
            returns the whole interval.
        """
        index = self._check_index(index)
        t0_s, t1_s = float(t0_s), float(t1_s)
        if t0_s < 0:
            raise ValueError(f"on_intervals_s: t0_s = {t0_s} s is before the clock started")
        if t1_s <= t0_s:
            return np.empty(0), np.empty(0)
        if not self.blinks[index]:
            return np.array([t0_s]), np.array([t1_s])
        k0 = int(t0_s // BLOCK_S)
        k1 = int(np.nextafter(t1_s, -np.inf) // BLOCK_S)
        state_k0 = self._blink_block_start(index, k0)
        parts = []
        state = state_k0
        for k in range(k0, k1 + 1):
            sw = self._blink_switches(index, k, state)
            parts.append(sw)
            state = state ^ bool(sw.size % 2)
        switches = np.concatenate(parts)
        n_before = int(np.searchsorted(switches, t0_s, side="right"))
        state_t0 = state_k0 ^ bool(n_before % 2)
        inside = switches[n_before:np.searchsorted(switches, t1_s, side="left")]
        edges = np.concatenate([[t0_s], inside, [t1_s]])
        seg_on = np.zeros(edges.size - 1, dtype=bool)
        seg_on[0::2] = state_t0
        seg_on[1::2] = not state_t0
        return edges[:-1][seg_on].copy(), edges[1:][seg_on].copy()

    def on_fraction(self, index: int, t0_s: float, t1_s: float) -> float:
        """Fraction of ``[t0_s, t1_s)`` emitter ``index`` spends ON (0–1)."""
        if t1_s <= t0_s:
            return 0.0
        starts, stops = self.on_intervals_s(index, t0_s, t1_s)
        return float(np.sum(stops - starts) / (t1_s - t0_s))

    # ------------------------------------------------------------------ spectral diffusion
    def _diffusion_block(self, index: int, block: int, x_prev: float) -> np.ndarray:
        """OU samples (eV) on the grid points of ``block``, continuing from ``x_prev``."""

        def make() -> np.ndarray:
            n_pts = int(round(BLOCK_S / DIFFUSION_DT_S))
            sigma_ev = self.spectral_diffusion_mev * 1e-3
            a = float(np.exp(-DIFFUSION_DT_S / self.spectral_diffusion_tau_s))
            rng = np.random.default_rng([self.seed, index, block, _STREAM_DIFFUSION])
            kicks = rng.normal(0.0, sigma_ev * np.sqrt(1.0 - a * a), n_pts)
            values = np.empty(n_pts)
            x = float(x_prev)
            for j, kick in enumerate(kicks.tolist()):  # exact AR(1) step of the OU process
                x = a * x + kick
                values[j] = x
            return values

        return self._cached((index, block, _STREAM_DIFFUSION), make)

    def _diffusion_block_start(self, index: int, block: int) -> float:
        """Value just before the first grid point of ``block`` (chained from t = 0)."""
        with self._lock:
            starts = self._diffusion_start.get(index)
            if starts is None:
                rng = np.random.default_rng([self.seed, index, 0, 0, _STREAM_DIFFUSION])
                starts = [float(rng.normal(0.0, self.spectral_diffusion_mev * 1e-3))]
                self._diffusion_start[index] = starts
            known = len(starts)
        x = starts[known - 1]
        for k in range(known - 1, block):
            x = float(self._diffusion_block(index, k, x)[-1])
            with self._lock:
                if len(starts) == k + 1:
                    starts.append(x)
        return starts[block]

    def energy_offset_ev(self, index: int, t_s):
        """Spectral-diffusion offset of the peak energy of emitter ``index``.

        Parameters
        ----------
        index : int
            Emitter index.
        t_s : float or array_like
            Clock time(s) in s, ≥ 0.

        Returns
        -------
        float or ndarray
            Offset from ``energy_ev[index]`` in eV, same shape as ``t_s``
            (zero for aggregates or when spectral diffusion is off).
        """
        index = self._check_index(index)
        t = np.asarray(t_s, dtype=np.float64)
        scalar = t.ndim == 0
        t = np.atleast_1d(t)
        if np.any(t < 0):
            raise ValueError("energy_offset_ev: times must be ≥ 0 s")
        if self.spectral_diffusion_mev == 0 or self.is_aggregate[index] or t.size == 0:
            out = np.zeros(t.shape)
            return float(out[0]) if scalar else out
        n_pts = int(round(BLOCK_S / DIFFUSION_DT_S))
        g = t / DIFFUSION_DT_S
        i0 = np.floor(g).astype(np.int64)
        frac = g - i0
        needed = np.unique(np.concatenate([i0 // n_pts, (i0 + 1) // n_pts]))
        values = {}
        for k in needed:
            x_prev = self._diffusion_block_start(index, int(k))
            values[int(k)] = self._diffusion_block(index, int(k), x_prev)

        def at(i: np.ndarray) -> np.ndarray:
            out = np.empty(i.shape)
            blocks = i // n_pts
            for k in np.unique(blocks):
                sel = blocks == k
                out[sel] = values[int(k)][i[sel] - k * n_pts]
            return out

        out = (1.0 - frac) * at(i0) + frac * at(i0 + 1)
        return float(out[0]) if scalar else out

    def mean_energy_offset_ev(self, index: int, t0_s: float, t1_s: float) -> float:
        """Time average of :meth:`energy_offset_ev` over ``[t0_s, t1_s)``, in eV."""
        if self.spectral_diffusion_mev == 0 or self.is_aggregate[self._check_index(index)]:
            return 0.0
        if t1_s <= t0_s:
            return float(self.energy_offset_ev(index, t0_s))
        n = int(np.clip(np.ceil((t1_s - t0_s) / DIFFUSION_DT_S) + 1, 2, 4001))
        return float(np.mean(self.energy_offset_ev(index, np.linspace(t0_s, t1_s, n))))
