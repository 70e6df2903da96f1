"""The declared layout of a micropl session file: record type → table → columns.

Every record type that the session storage accepts has one :class:`TableSpec`
here, built from the dataclass fields plus an explicit table of storage
kinds, dtypes and units. Registering a new record type is one call to
:func:`register_table` (see the bottom of this module).

A table is stored in the HDF5 group ``/tables/<name>`` as

* ``rows`` — a 1-D, chunked, resizable compound dataset, one row per record.
  It holds the envelope (``seq``, ``run_id``, ``qd_id``, ``kind``), every
  scalar column, and for each variable-size column its ``<col>_offset`` and
  ``<col>_size`` (plus ``<col>_shape`` for arrays of more than one
  dimension) into
* ``<col>`` — a 1-D, chunked, resizable dataset of the flat values of that
  column for all rows (array elements, or UTF-8 bytes of text and JSON).

``rows`` is written last and flushed last, so the number of rows in
``rows`` is the number of complete records.

Column kinds
------------
``scalar``
    one number per row, stored in ``rows`` with the column dtype (float64,
    int64 or bool).
``label``
    a short string of at most N UTF-8 bytes stored in ``rows`` as ``SN``;
    only for values checked against a fixed set (statuses).
``text``
    a str of any length, UTF-8 bytes in the values dataset (uint8).
``json``
    any JSON-able value (tuples, dicts, arrays of str), as UTF-8 JSON text;
    ``decode`` says how to rebuild it (``"tuple"``, ``"str_array"`` or as is).
``array``
    a numpy array of up to ``max_ndim`` dimensions, flattened (C order) into
    the values dataset with the column dtype. Values are converted only when
    numpy calls the cast "safe", so what comes back is value-identical.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from micropl.acquisition.storage.tags import TAG_CHUNK, RawTagsStored
from micropl.analysis.g2 import CwG2Fit, G2Result, PeakTrainFit
from micropl.analysis.maps import SpotList
from micropl.analysis.spectra import SpectrumFit
from micropl.records import (
    Frame,
    G2Histogram,
    InstrumentSnapshot,
    MapLine,
    PowerSeriesData,
    QDFlags,
    QDStatus,
    QDTarget,
    QDTruth,
    RefocusResult,
    RunStart,
    RunStop,
    Spectrum,
    TagChunk,
)

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CODECS",
    "ENVELOPE",
    "KIND_BYTES",
    "TAG_CHUNK",
    "SchemaError",
    "SAME_LENGTH",
    "Column",
    "TableSpec",
    "F",
    "I",
    "B",
    "A",
    "L",
    "T",
    "J",
    "build_table",
    "register_table",
    "table_for",
    "table_by_name",
    "registered_tables",
    "unit_from_name",
]

#: Value of the root attribute ``format`` of every session file.
FORMAT_NAME = "micropl-session"
#: Layout version (root attribute ``format_version``). 2: compressed array columns
#: (:attr:`Column.codec`); files of version 1 have none and stay readable.
FORMAT_VERSION = 2
#: Storage codecs of array columns (see :attr:`Column.codec`).
CODECS = ("", "zstd", "delta-zstd")
#: Bytes of the fixed-length ``kind`` field.
KIND_BYTES = 32
#: Fields every ``rows`` dataset starts with.
ENVELOPE: tuple[tuple[str, str], ...] = (
    ("seq", "<i8"),
    ("run_id", "<i8"),
    ("qd_id", "<i8"),
    ("kind", f"S{KIND_BYTES}"),
)

_KINDS = ("scalar", "label", "text", "json", "array")
_SCALAR_DTYPES = ("<f8", "<i8", "|b1")
# Small: every array column allocates at least one chunk (1 MiB each made the small
# tables of a survey cost more than its spectra).
_DEFAULT_ARRAY_CHUNK_BYTES = 1 << 16
# Elements per chunk of the other compressed columns: about one record each.
_FRAME_CHUNK = 1 << 14
_HISTOGRAM_CHUNK = 1 << 14
_DEFAULT_TEXT_CHUNK_BYTES = 1 << 16


class SchemaError(TypeError):
    """A record type and its declared columns disagree."""


@dataclass(frozen=True)
class Column:
    """One stored column of a table.

    Attributes
    ----------
    name : str
        Field name of the record (also the dataset/field name in the file).
    kind : str
        ``"scalar"``, ``"label"``, ``"text"``, ``"json"`` or ``"array"``.
    dtype : str
        numpy dtype string: of the scalar, of the label (``"|S16"``), of the
        array elements; ``"|u1"`` for text and JSON.
    unit : str
        Physical unit (``"nm"``, ``"eV"``, ``"ps"``...), ``""`` when
        dimensionless or not a number.
    max_ndim : int
        Array columns: most dimensions a value may have (0-d arrays allowed).
    decode : str
        JSON columns: ``"tuple"``, ``"str_array"`` or ``""`` (as loaded).
    chunk : int
        Elements per chunk of the values dataset (variable-size columns).
    codec : str
        Array columns: how the values dataset is stored (:data:`CODECS`): ``""``
        plain and uncompressed (every file of format version 1); ``"zstd"``
        Blosc2/Zstd-compressed (byte shuffle for multi-byte dtypes, bit shuffle
        for bytes); ``"delta-zstd"`` each record stored as its first value then
        its successive differences (int64, modulo 2**64), compressed the same way. A compressed column's
        records each start on a chunk boundary, so that a chunk is written once
        and never rewritten.
    """

    name: str
    kind: str
    dtype: str
    unit: str = ""
    max_ndim: int = 1
    decode: str = ""
    chunk: int = 0
    codec: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise SchemaError(f"column {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "scalar" and self.dtype not in _SCALAR_DTYPES:
            raise SchemaError(f"column {self.name!r}: scalar dtype must be one of "
                              f"{_SCALAR_DTYPES}, got {self.dtype!r}")
        if self.kind in ("text", "json") and self.dtype != "|u1":
            raise SchemaError(f"column {self.name!r}: text/json columns are stored as '|u1'")
        if self.kind == "label" and np.dtype(self.dtype).kind != "S":
            raise SchemaError(f"column {self.name!r}: label dtype must be 'S<n>'")
        if self.kind == "array" and not 0 < self.max_ndim <= 8:
            raise SchemaError(f"column {self.name!r}: max_ndim must be 1..8")
        if self.codec not in CODECS:
            raise SchemaError(f"column {self.name!r}: unknown codec {self.codec!r} "
                              f"(one of {CODECS})")
        if self.codec and self.kind != "array":
            raise SchemaError(f"column {self.name!r}: only array columns are compressed")
        if self.codec == "delta-zstd" and np.dtype(self.dtype) != np.dtype("<i8"):
            raise SchemaError(f"column {self.name!r}: delta-zstd needs an int64 column")

    @property
    def variable(self) -> bool:
        """True when the column has a values dataset (text, json, array)."""
        return self.kind in ("text", "json", "array")

    @property
    def has_shape(self) -> bool:
        """True when rows store a ``<name>_shape`` field (arrays beyond 1-D)."""
        return self.kind == "array" and self.max_ndim != 1

    @property
    def chunk_elems(self) -> int:
        """Chunk length of the values dataset, in elements."""
        if self.chunk:
            return self.chunk
        itemsize = np.dtype(self.dtype).itemsize
        target = _DEFAULT_ARRAY_CHUNK_BYTES if self.kind == "array" else _DEFAULT_TEXT_CHUNK_BYTES
        return max(1024, target // itemsize)

    def row_fields(self) -> list[tuple]:
        """Fields this column contributes to the ``rows`` compound dtype."""
        if self.kind in ("scalar", "label"):
            return [(self.name, self.dtype)]
        fields: list[tuple] = [(f"{self.name}_offset", "<i8"), (f"{self.name}_size", "<i8")]
        if self.has_shape:
            fields.append((f"{self.name}_shape", "<i8", (self.max_ndim,)))
        return fields

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (stored in the file)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Column:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


# Shorthands for the explicit column tables --------------------------------------------
def F(unit: str = "") -> Column:  # noqa: N802 - short constructor names read as a table
    """Float64 scalar column with ``unit``."""
    return Column("", "scalar", "<f8", unit)


def I(unit: str = "") -> Column:  # noqa: E743, N802
    """Int64 scalar column."""
    return Column("", "scalar", "<i8", unit)


def B() -> Column:  # noqa: N802
    """Bool scalar column."""
    return Column("", "scalar", "|b1")


def A(dtype: str, unit: str = "", max_ndim: int = 1, chunk: int = 0,  # noqa: N802
      codec: str = "") -> Column:
    """Array column of element ``dtype`` with up to ``max_ndim`` dimensions."""
    return Column("", "array", np.dtype(dtype).str, unit, max_ndim=max_ndim, chunk=chunk,
                  codec=codec)


def L(n_bytes: int = 16) -> Column:  # noqa: N802
    """Short fixed-length label (at most ``n_bytes`` UTF-8 bytes)."""
    return Column("", "label", f"|S{n_bytes}")


def T() -> Column:  # noqa: N802
    """Free text column."""
    return Column("", "text", "|u1")


def J(decode: str = "", unit: str = "") -> Column:  # noqa: N802
    """JSON column; ``decode`` is ``"tuple"``, ``"str_array"`` or ``""``."""
    return Column("", "json", "|u1", unit, decode=decode)


@dataclass(frozen=True)
class TableSpec:
    """How one record type is stored.

    Attributes
    ----------
    name : str
        Table name: the group ``/tables/<name>``.
    type_name : str
        ``module.QualName`` of the record class.
    columns : tuple of Column
        Stored fields, in dataclass order (without ``own_ids``).
    default_kind : str
        ``kind`` written when the record is not in a :class:`Tagged` envelope
        with a kind.
    own_ids : tuple of str
        Record fields that are the envelope's ``run_id``/``qd_id`` (for the
        bookkeeping records, which carry their ids themselves).
    record_type : type or None
        The class (None when the spec was read from a file and the class is
        unknown to this version of micropl).
    inferred : tuple of str
        Columns built from the type annotation because the explicit table had
        no entry (a warning at import; the tests require this to be empty).
    """

    name: str
    type_name: str
    columns: tuple[Column, ...]
    default_kind: str
    own_ids: tuple[str, ...] = ()
    record_type: type | None = dataclasses.field(default=None, compare=False)
    inferred: tuple[str, ...] = ()

    def row_dtype(self) -> np.dtype:
        """Compound dtype of the ``rows`` dataset."""
        fields: list[tuple] = list(ENVELOPE)
        for col in self.columns:
            fields.extend(col.row_fields())
        return np.dtype(fields)

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def to_json(self) -> str:
        """JSON description stored as the table group's ``schema`` attribute."""
        return json.dumps({
            "name": self.name,
            "type_name": self.type_name,
            "default_kind": self.default_kind,
            "own_ids": list(self.own_ids),
            "columns": [c.to_dict() for c in self.columns],
        })

    @classmethod
    def from_json(cls, text: str) -> TableSpec:
        """Rebuild a spec from :meth:`to_json`, attaching the registered class if any."""
        data = json.loads(text)
        registered = _BY_NAME.get(data["name"])
        record_type = None
        if registered is not None and registered.type_name == data["type_name"]:
            record_type = registered.record_type
        return cls(
            name=data["name"],
            type_name=data["type_name"],
            columns=tuple(Column.from_dict(c) for c in data["columns"]),
            default_kind=data["default_kind"],
            own_ids=tuple(data["own_ids"]),
            record_type=record_type,
        )


_UNIT_SUFFIXES = (
    ("_mev", "meV"), ("_ev", "eV"), ("_nm", "nm"), ("_um", "um"), ("_mm", "mm"),
    ("_ps", "ps"), ("_ns", "ns"), ("_us", "us"), ("_ms", "ms"), ("_s", "s"), ("_hz", "Hz"),
    ("_cps", "counts/s"), ("_c", "degC"), ("_w", "W"), ("_deg", "deg"), ("_percent", "%"),
)


def unit_from_name(name: str) -> str:
    """Unit implied by a name's suffix (``"x_um"`` → ``"um"``; ``""`` when none)."""
    bare = name[: -len("_err")] if name.endswith("_err") else name
    for suffix, unit in _UNIT_SUFFIXES:
        if bare.endswith(suffix) or name.endswith(suffix):
            return unit
    return ""


def _infer(field: dataclasses.Field) -> Column:
    annotation = str(field.type)
    unit = unit_from_name(field.name)
    if "ndarray" in annotation:
        return A("<f8", unit, max_ndim=3)
    if annotation in ("float", "np.float64"):
        return F(unit)
    if annotation == "int":
        return I(unit)
    if annotation == "bool":
        return B()
    if annotation == "str":
        return T()
    if annotation.startswith("tuple"):
        return J("tuple", unit)
    return J("", unit)


def build_table(name: str, record_type: type, columns: Mapping[str, Column], *,
                default_kind: str, own_ids: tuple[str, ...] = (),
                strict: bool = False) -> TableSpec:
    """Build the spec of ``record_type`` from its dataclass fields and ``columns``.

    Parameters
    ----------
    name : str
        Table name.
    record_type : type
        A dataclass.
    columns : mapping of str to Column
        Explicit kind/dtype/unit of every field (the ``name`` of each
        :class:`Column` is filled in here).
    default_kind : str
        Kind of records stored without a :class:`Tagged` kind.
    own_ids : tuple of str
        Fields stored as the envelope ``run_id``/``qd_id``.
    strict : bool
        Raise :class:`SchemaError` for a field without an entry; otherwise the
        column is inferred from the annotation and a warning is logged.

    Raises
    ------
    SchemaError
        For an ``own_ids`` field that is not ``run_id``/``qd_id``, or
        (``strict``) a field without an entry or an entry that names no field.
    """
    if not dataclasses.is_dataclass(record_type):
        raise SchemaError(f"{record_type!r} is not a dataclass")
    field_list = dataclasses.fields(record_type)
    names = {f.name for f in field_list}
    stale = set(columns) - names
    if stale:
        if strict:
            raise SchemaError(f"{record_type.__name__}: columns {sorted(stale)} name no field")
        log.warning("%s: declared storage columns %s name no field; ignored",
                    record_type.__name__, sorted(stale))
    for own in own_ids:
        if own not in ("run_id", "qd_id") or own not in names:
            raise SchemaError(f"{record_type.__name__}: own id {own!r} is not run_id/qd_id")
    built: list[Column] = []
    inferred: list[str] = []
    for f in field_list:
        if f.name in own_ids:
            continue
        col = columns.get(f.name)
        if col is None:
            if strict:
                raise SchemaError(f"{record_type.__name__}.{f.name} has no storage column: "
                                  f"add it to micropl.acquisition.storage.schema")
            log.warning("%s.%s has no declared storage column; inferred from %r",
                        record_type.__name__, f.name, f.type)
            col = _infer(f)
            inferred.append(f.name)
        built.append(dataclasses.replace(col, name=f.name))
    if len(default_kind.encode()) > KIND_BYTES:
        raise SchemaError(f"default kind {default_kind!r} is longer than {KIND_BYTES} bytes")
    return TableSpec(
        name=name,
        type_name=f"{record_type.__module__}.{record_type.__qualname__}",
        columns=tuple(built),
        default_kind=default_kind,
        own_ids=own_ids,
        record_type=record_type,
        inferred=tuple(inferred),
    )


_BY_NAME: dict[str, TableSpec] = {}
_BY_TYPE: dict[type, TableSpec] = {}


def register_table(spec: TableSpec) -> TableSpec:
    """Add ``spec`` to the registry (a session created afterwards has its table).

    Raises
    ------
    SchemaError
        When the table name or the record type is already registered.
    """
    if spec.record_type is None:
        raise SchemaError(f"table {spec.name!r}: a registered table needs its record type")
    if spec.name in _BY_NAME or spec.record_type in _BY_TYPE:
        raise SchemaError(f"table {spec.name!r} / {spec.type_name} is already registered")
    if not spec.name.isidentifier():
        raise SchemaError(f"table name {spec.name!r} must be an identifier")
    _BY_NAME[spec.name] = spec
    _BY_TYPE[spec.record_type] = spec
    return spec


#: Per table, the array columns of one record that must hold equally many values
#: (the reader refuses a row where they differ: such arrays do not belong together).
SAME_LENGTH: dict[str, tuple[str, ...]] = {
    "spectrum": ("wavelength_nm", "counts"),
    "tag_chunk": ("t_ps", "channel"),
    "map_line": ("x_um", "counts"),
    "g2_histogram": ("tau_ps", "counts"),
    "power_series": ("power_percent", "rate_cps", "rate_err_cps"),
    "spot_list": ("x_um", "x_err_um", "y_um", "y_err_um", "amplitude", "amplitude_err",
                  "offset", "fwhm_um", "fwhm_err_um", "fwhm_major_um", "snr", "isolated",
                  "nearest_um", "at_edge"),
}


def table_for(record_type: type) -> TableSpec:
    """The registered spec of ``record_type``.

    Raises
    ------
    SchemaError
        When the type has no table.
    """
    try:
        return _BY_TYPE[record_type]
    except KeyError:
        raise SchemaError(f"no storage table for {record_type.__qualname__}; register one "
                          f"with micropl.acquisition.storage.schema.register_table") from None


def table_by_name(name: str) -> TableSpec:
    """The registered spec called ``name`` (KeyError when none)."""
    return _BY_NAME[name]


def registered_tables() -> tuple[TableSpec, ...]:
    """Every registered spec, in registration order."""
    return tuple(_BY_NAME.values())


# =========================================================================== the tables
# Bookkeeping records (ids are the envelope) -------------------------------------------
register_table(build_table("run_start", RunStart, {
    "procedure": T(), "parameters_json": T(), "t_s": F("s"),
}, default_kind="run_start", own_ids=("run_id",)))
register_table(build_table("run_stop", RunStop, {
    "status": L(16), "reason": T(), "t_s": F("s"),
}, default_kind="run_stop", own_ids=("run_id",)))
register_table(build_table("qd_target", QDTarget, {
    "x_um": F("um"), "y_um": F("um"), "amplitude": F("counts"), "snr": F(),
}, default_kind="target", own_ids=("run_id", "qd_id")))
register_table(build_table("qd_status", QDStatus, {
    "status": L(16), "reason": T(), "t_s": F("s"),
}, default_kind="status", own_ids=("run_id", "qd_id")))
register_table(build_table("instrument_snapshot", InstrumentSnapshot, {
    "settings_json": T(), "t_s": F("s"),
}, default_kind="snapshot", own_ids=("run_id",)))

# Instrument records ---------------------------------------------------------------------
register_table(build_table("frame", Frame, {
    "counts": A("<f8", "ADU", max_ndim=2, chunk=_FRAME_CHUNK, codec="zstd"), "exposure_s": F("s"), "t_s": F("s"),
    "index": I(), "em_gain": I(), "read_mode": T(),
}, default_kind="frame"))
register_table(build_table("spectrum", Spectrum, {
    # plain: up to 1000 flushed FVB spectra/s, and their noisy float64 counts gain
    # little (about 15 %) from compression
    "wavelength_nm": A("<f8", "nm"), "counts": A("<f8", "(counts_unit)"), "exposure_s": F("s"),
    "t_s": F("s"), "accumulations": I(), "em_gain": I(), "bias_subtracted": B(),
    "counts_unit": T(), "read_noise": F("(counts_unit)"), "saturated_pixels": I(),
}, default_kind="spectrum"))
register_table(build_table("tag_chunk", TagChunk, {
    # Stored as per-record differences, compressed; chunks of TAG_CHUNK tags, which the
    # session's tag store fills whole (micropl.acquisition.storage.tags).
    "t_ps": A("<i8", "ps", chunk=TAG_CHUNK, codec="delta-zstd"),
    "channel": A("|u1", "", chunk=TAG_CHUNK, codec="zstd"),
    "t_start_ps": I("ps"), "t_stop_ps": I("ps"), "overflow": B(), "missed_events": I(),
}, default_kind="tags"))
register_table(build_table("map_line", MapLine, {
    "line_index": I(), "y_um": F("um"), "x_um": A("<f8", "um"), "counts": A("<f8", "counts"),
    "dwell_s": F("s"), "source": T(),
}, default_kind="map_line"))

# Acquisition data records ---------------------------------------------------------------
register_table(build_table("g2_histogram", G2Histogram, {
    "tau_ps": A("<f8", "ps", chunk=_HISTOGRAM_CHUNK, codec="zstd"),
    "counts": A("<i8", "counts", chunk=_HISTOGRAM_CHUNK, codec="zstd"), "bin_ps": F("ps"),
    "integration_s": F("s"),
}, default_kind="g2_histogram"))
register_table(build_table("refocus", RefocusResult, {
    "x_um": F("um"), "y_um": F("um"), "dx_um": F("um"), "dy_um": F("um"),
    "x_err_um": F("um"), "y_err_um": F("um"), "z_um": F("um"),
    "amplitude_cps": F("counts/s"), "fwhm_um": F("um"), "moved": B(), "reason": T(),
}, default_kind="refocus"))
register_table(build_table("power_series", PowerSeriesData, {
    "power_percent": A("<f8", "%"), "rate_cps": A("<f8", "counts/s"),
    "rate_err_cps": A("<f8", "counts/s"),
}, default_kind="power_series"))

register_table(build_table("qd_flags", QDFlags, {
    "flags": T(), "detail": T(), "t_s": F("s"),
}, default_kind="flags"))
register_table(build_table("qd_truth", QDTruth, {
    "index": I(), "distance_um": F("um"), "n_emitters": I(), "main_fraction": F(),
    "energy_ev": F("eV"), "fwhm_mev": F("meV"), "g2_0": F(), "g2_0_intrinsic": F(),
    "t_s": F("s"),
}, default_kind="truth"))

# Analysis results -------------------------------------------------------------------------
_FIT_ARRAY = 3  # SpectrumFit fields have the batch shape (+ n_peaks, + n_params axes)
register_table(build_table("spectrum_fit", SpectrumFit, {
    "model": T(), "n_peaks": I(),
    "wavelength_nm": A("<f8", "nm", max_ndim=_FIT_ARRAY),
    "peak_energy_ev": A("<f8", "eV", max_ndim=_FIT_ARRAY),
    "peak_energy_err_ev": A("<f8", "eV", max_ndim=_FIT_ARRAY),
    "peak_wavelength_nm": A("<f8", "nm", max_ndim=_FIT_ARRAY),
    "peak_wavelength_err_nm": A("<f8", "nm", max_ndim=_FIT_ARRAY),
    "fwhm_mev": A("<f8", "meV", max_ndim=_FIT_ARRAY),
    "fwhm_err_mev": A("<f8", "meV", max_ndim=_FIT_ARRAY),
    "area": A("<f8", "counts", max_ndim=_FIT_ARRAY),
    "area_err": A("<f8", "counts", max_ndim=_FIT_ARRAY),
    "background": A("<f8", "counts", max_ndim=_FIT_ARRAY),
    "background_err": A("<f8", "counts", max_ndim=_FIT_ARRAY),
    "reduced_chi2": A("<f8", "", max_ndim=_FIT_ARRAY),
    "dof": A("<i8", "", max_ndim=_FIT_ARRAY),
    "success": A("|b1", "", max_ndim=_FIT_ARRAY),
    "message": J("str_array"),
    "n_iter": A("<i8", "", max_ndim=_FIT_ARRAY),
    "errors_scaled": A("|b1", "", max_ndim=_FIT_ARRAY),
    "param_names": J("tuple"),
    "params": A("<f8", "eV", max_ndim=_FIT_ARRAY),  # energies/widths in eV, area, background
    "covariance": A("<f8", "", max_ndim=_FIT_ARRAY),
    # quality: "ok" | "poor fit" | "failed" | "saturated" (micropl.analysis.spectra.QUALITIES)
    "saturated": A("|b1", "", max_ndim=_FIT_ARRAY),
    "quality": J("str_array"),
    "roi_nm": A("<f8", "nm", max_ndim=_FIT_ARRAY),
}, default_kind="spectrum_fit"))
register_table(build_table("g2_result", G2Result, {
    "g2_0": F(), "g2_0_err": F(), "g2_0_bgcorr": F(), "g2_0_bgcorr_err": F(),
    "rep_rate_hz": F("Hz"), "period_ps": F("ps"), "period_source": T(),
    "delay_ps": F("ps"), "zero_delay_source": T(), "n_side": I(), "n_side_left": I(),
    "n_side_right": I(), "central_counts": F("counts"), "side_mean_counts": F("counts"),
    "side_counts": A("<f8", "counts"), "side_delays_ps": A("<f8", "ps"),
    "background_per_bin": F("counts"), "background_per_bin_err": F("counts"),
    "central_window_ps": J("tuple", "ps"), "side_windows_ps": A("<f8", "ps", max_ndim=2),
    "window_fraction": F(), "bin_ps": F("ps"),
    "g2_0_ci68": J("tuple"), "g2_0_bgcorr_ci68": J("tuple"), "g2_0_bgcorr_clipped": B(),
}, default_kind="g2_result"))
register_table(build_table("peak_train_fit", PeakTrainFit, {
    "g2_0": F(), "g2_0_err": F(), "lifetime_ns": F("ns"), "lifetime_ns_err": F("ns"),
    "delay_ps": F("ps"), "delay_ps_err": F("ps"), "irf_sigma_ps": F("ps"),
    "irf_sigma_ps_err": F("ps"), "side_amplitude": F("counts"),
    "side_amplitude_err": F("counts"), "background_per_bin": F("counts"),
    "background_per_bin_err": F("counts"), "period_ps": F("ps"), "chi2_red": F(),
    "model": A("<f8", "counts", chunk=_HISTOGRAM_CHUNK, codec="zstd"), "success": B(),
}, default_kind="peak_train_fit"))
register_table(build_table("cw_g2_fit", CwG2Fit, {
    "g2_0": F(), "g2_0_err": F(), "tau0_ns": F("ns"), "tau0_ns_err": F("ns"),
    "delay_ps": F("ps"), "delay_ps_err": F("ps"), "irf_sigma_ps": F("ps"),
    "irf_sigma_ps_err": F("ps"), "norm_counts_per_bin": F("counts"),
    "norm_counts_per_bin_err": F("counts"), "normalisation": T(), "g2_tau": A("<f8"),
    "model": A("<f8"), "chi2_red": F(),
}, default_kind="cw_g2_fit"))
register_table(build_table("spot_list", SpotList, {
    "x_um": A("<f8", "um"), "x_err_um": A("<f8", "um"), "y_um": A("<f8", "um"),
    "y_err_um": A("<f8", "um"), "amplitude": A("<f8", "counts"),
    "amplitude_err": A("<f8", "counts"), "offset": A("<f8", "counts"),
    "fwhm_um": A("<f8", "um"), "fwhm_err_um": A("<f8", "um"),
    "fwhm_major_um": A("<f8", "um"), "snr": A("<f8"), "isolated": A("|b1"),
    "nearest_um": A("<f8", "um"), "at_edge": A("|b1"), "noise_counts": F("counts"),
    "background_counts": F("counts"), "psf_fwhm_um": F("um"), "isolation_um": F("um"),
    "snr_min": F(), "n_candidates": I(), "n_failed_fits": I(), "n_below_snr": I(),
    "n_rejected_not_isolated": I(),
}, default_kind="spots"))


# Time-resolved PL and power-series fits (trpl, power_series) --------------------------------
from micropl.analysis.lifetime import LifetimeFit  # noqa: E402
from micropl.analysis.saturation import SaturationFit  # noqa: E402
from micropl.records import DecayHistogram  # noqa: E402

SAME_LENGTH["decay_histogram"] = ("t_ps", "counts")
SAME_LENGTH["lifetime_fit"] = ("tau_ns", "tau_err_ns", "amplitude", "amplitude_err",
                               "intensity_fraction")
register_table(build_table("decay_histogram", DecayHistogram, {
    "t_ps": A("<f8", "ps", chunk=_HISTOGRAM_CHUNK, codec="zstd"),
    "counts": A("<i8", "counts", chunk=_HISTOGRAM_CHUNK, codec="zstd"), "bin_ps": F("ps"),
    "period_ps": F("ps"), "channel": I(), "sync_channel": I(), "pulses_per_sync": I(),
    "integration_s": F("s"),
}, default_kind="decay_histogram"))
register_table(build_table("lifetime_fit", LifetimeFit, {
    "tau_ns": A("<f8", "ns"), "tau_err_ns": A("<f8", "ns"), "amplitude": A("<f8", "counts"),
    "amplitude_err": A("<f8", "counts"), "intensity_fraction": A("<f8"), "t0_ps": F("ps"),
    "t0_err_ps": F("ps"), "irf_sigma_ps": F("ps"), "irf_sigma_err_ps": F("ps"),
    "irf_fixed": B(), "background": F("counts"), "background_err": F("counts"),
    "red_chi2": F(), "dof": I(), "period_ps": F("ps"), "t_ps": A("<f8", "ps"),
    "model_counts": A("<f8", "counts"), "success": B(), "reason": T(),
}, default_kind="lifetime_fit"))
# amplitude, slope and offset are in the unit of the fitted counts (power_series: counts/s)
register_table(build_table("saturation_fit", SaturationFit, {
    "amplitude": F(), "amplitude_err": F(), "p_sat": F("(power_unit)"),
    "p_sat_err": F("(power_unit)"), "slope": F(), "slope_err": F(), "offset": F(),
    "offset_err": F(), "linear_background": B(),
    "covariance": A("<f8", "", max_ndim=2), "red_chi2": F(), "dof": I(), "success": B(),
    "reason": T(), "power_unit": T(),
}, default_kind="saturation_fit"))


# Hardware-timed and spectral maps (raster_scan, hyperspectral) ----------------------------
from micropl.records.scans import MapTiming, SpectralCube  # noqa: E402

register_table(build_table("map_timing", MapTiming, {
    "timing": L(16), "reason": T(), "marker_channel": I(), "dwell_s": F("s"),
}, default_kind="map_timing"))
register_table(build_table("spectral_cube", SpectralCube, {
    "x_um": A("<f8", "um"), "y_um": A("<f8", "um"), "wavelength_nm": A("<f8", "nm"),
    "counts": A("<f8", "e", max_ndim=3), "exposure_s": F("s"), "dwell_s": F("s"),
    "em_gain": I(), "read_noise": F("e"), "timing": L(16), "missing_pixels": I(),
}, default_kind="spectral_cube"))
from micropl.analysis.spectral_map import SpectralMapFit  # noqa: E402

register_table(build_table("spectral_map_fit", SpectralMapFit, {
    "x_um": A("<f8", "um"), "y_um": A("<f8", "um"),
    "peak_energy_ev": A("<f8", "eV", max_ndim=2), "peak_energy_err_ev": A("<f8", "eV", max_ndim=2),
    "fwhm_mev": A("<f8", "meV", max_ndim=2), "fwhm_err_mev": A("<f8", "meV", max_ndim=2),
    "area": A("<f8", "e", max_ndim=2), "area_err": A("<f8", "e", max_ndim=2),
    "reduced_chi2": A("<f8", "", max_ndim=2), "quality": J("str_array"), "model": T(),
}, default_kind="spectral_map_fit"))

# Points of interest marked by hand (the GUI) ---------------------------------------------
from micropl.records.points import PointOfInterest  # noqa: E402

register_table(build_table("point_of_interest", PointOfInterest, {
    "name": T(), "x_um": F("um"), "y_um": F("um"), "z_um": F("um"), "note": T(),
    "removed": B(), "t_s": F("s"),
}, default_kind="poi"))

# What the session stored of each stream of raw tags (storage.raw_tags) ----------------------

register_table(build_table("raw_tags_stored", RawTagsStored, {
    "mode": T(), "window_ps": I("ps"), "span_ps": I("ps"), "channel_a": I(), "channel_b": I(),
    "n_tags": I(), "n_stored": I(), "n_dropped": I(), "t_s": F("s"),
}, default_kind="raw_tags", strict=True))
