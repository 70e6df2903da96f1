"""Independent writers of lab file formats for tests: PTU T3, PHU, SPE 2.x and 3.0.

Written from the vendors' format descriptions, separately from micropl's readers
(``micropl.analysis.formats``, ``micropl.ptu``), so that a reader is checked against
files it did not define; the third-party readers (ptufile, spe2py) read the same
files in the tests. The tag layout of PicoQuant headers is :func:`ptu_writer.tag`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from ptu_writer import TY_EMPTY8, tag

HH2T3 = 0x01010304
HH1T3 = 0x00010304
PHT3 = 0x00010303


def encode_t3(nsync: np.ndarray, dtime: np.ndarray, channel: np.ndarray,
              record_type: int = HH2T3) -> np.ndarray:
    """T3 records of photons (absolute sync numbers ascending, delays, inputs 1..)."""
    out: list[int] = []
    if record_type == PHT3:
        wrap, per_record = 65_536, 1
    elif record_type == HH1T3:  # v1: every overflow record stands for one wrap
        wrap, per_record = 1_024, 1
    else:
        wrap, per_record = 1_024, 1_023
    wraps = 0
    for n, d, c in zip(np.asarray(nsync).tolist(), np.asarray(dtime).tolist(),
                       np.asarray(channel).tolist()):
        need = n // wrap - wraps
        while need > 0:
            k = min(need, per_record)
            if record_type == PHT3:
                out.append(15 << 28)  # channel 15, dtime 0: one overflow
            else:  # (v1 ignores the count field)
                out.append((1 << 31) | (63 << 25) | k)
            wraps += k
            need -= k
        if record_type == PHT3:
            out.append((c << 28) | (d << 16) | (n - wraps * wrap))  # router channel 1..4
        else:
            out.append(((c - 1) << 25) | (d << 10) | (n - wraps * wrap))
    return np.asarray(out, dtype="<u4")


def write_t3(path: Path, nsync, dtime, channel, *, period_s: float, resolution_s: float,
             record_type: int = HH2T3, n_records: int | None = None,
             acquisition_ms: int = 1000, sub_mode: int = 0) -> Path:
    """A PTU T3 file (``n_records`` overrides the header's count: a lying header)."""
    records = encode_t3(nsync, dtime, channel, record_type)
    head = b"PQTTTR\0\0" + b"1.0.00\0\0"
    head += tag("File_Comment", "micropl T3 test writer")
    head += tag("Measurement_Mode", 3)
    head += tag("Measurement_SubMode", sub_mode)
    head += tag("TTResult_SyncRate", int(round(1 / period_s)))
    head += tag("MeasDesc_GlobalResolution", float(period_s))
    head += tag("MeasDesc_Resolution", float(resolution_s))
    head += tag("MeasDesc_AcquisitionTime", int(acquisition_ms))
    head += tag("TTResultFormat_TTTRRecType", record_type)
    head += tag("TTResultFormat_BitsPerRecord", 32)
    head += tag("TTResult_NumberOfRecords", int(records.size if n_records is None
                                                else n_records))
    head += tag("Header_End", None, TY_EMPTY8)
    path.write_bytes(head + records.tobytes())
    return path


def write_phu(path: Path, curves: list[np.ndarray], *, resolution_s: float = 16e-12,
              acquisition_ms: int = 30_000, bins_claim: list[int] | None = None,
              offset_shift: int = 0) -> Path:
    """A PicoQuant PHU file of uint32 curves (``bins_claim``/``offset_shift`` lie)."""
    def header(offsets: list[int]) -> bytes:
        head = b"PQHISTO\0" + b"1.0.00\0\0"
        head += tag("File_Comment", "micropl PHU test writer")
        head += tag("Measurement_Mode", 0)
        head += tag("Measurement_SubMode", 1)
        head += tag("MeasDesc_AcquisitionTime", int(acquisition_ms))
        head += tag("MeasDesc_Resolution", float(resolution_s))
        head += tag("HistoResult_NumberOfCurves", len(curves))
        for k, curve in enumerate(curves):
            bins = curve.size if bins_claim is None else bins_claim[k]
            head += tag("HistResDscr_HistogramBins", int(bins), index=k)
            head += tag("HistResDscr_DataOffset", int(offsets[k]), index=k)
            head += tag("HistResDscr_MDescResolution", float(resolution_s), index=k)
        return head + tag("Header_End", None, TY_EMPTY8)

    size = len(header([0] * len(curves)))
    offsets, at = [], size
    for curve in curves:
        offsets.append(at + offset_shift)
        at += 4 * curve.size
    data = b"".join(np.asarray(c, dtype="<u4").tobytes() for c in curves)
    path.write_bytes(header(offsets) + data)
    return path


_SPE3_FORMATS = {"<u2": ("MonochromeUnsigned16", 3), "<u4": ("MonochromeUnsigned32", 8),
                 "<f4": ("MonochromeFloating32", 0)}


def write_spe3(path: Path, frames: np.ndarray, wavelength_nm: np.ndarray | None, *,
               exposure_ms: float = 500.0, dtype: str = "<u2", count_claim: int | None = None,
               footer_offset_claim: int | None = None, n_regions: int = 1,
               roi_x: int = 0) -> Path:
    """A LightField SPE 3.0 file of spectra (frames × pixels) with an XML footer.

    ``wavelength_nm`` may cover the whole sensor, the region starting at column
    ``roi_x``; ``n_regions`` > 1 declares that many regions (a file micropl refuses).
    """
    frames = np.atleast_2d(np.asarray(frames)).astype(dtype)
    n, width = frames.shape
    fmt, code = _SPE3_FORMATS[dtype]
    data = frames.tobytes()
    head = bytearray(4100)
    struct.pack_into("<h", head, 108, code)
    struct.pack_into("<H", head, 42, width)
    struct.pack_into("<H", head, 656, 1)
    struct.pack_into("<i", head, 1446, n)
    struct.pack_into("<f", head, 1992, 3.0)
    footer_at = 4100 + len(data)
    struct.pack_into("<Q", head, 678, footer_at if footer_offset_claim is None
                     else footer_offset_claim)
    stride = width * np.dtype(dtype).itemsize
    calib = ""
    if wavelength_nm is not None:
        values = ",".join(repr(float(v)) for v in wavelength_nm)
        calib = ('<Calibrations><WavelengthMapping id="1"><Wavelength xml:space="preserve">'
                 f"{values}</Wavelength></WavelengthMapping></Calibrations>")
    count = n if count_claim is None else count_claim
    xml = ('<SpeFormat version="3.0" xmlns="http://www.princetoninstruments.com/spe/2009">'
           f'<DataFormat><DataBlock type="Frame" count="{count}" pixelFormat="{fmt}" '
           f'size="{stride}" stride="{stride}">' + n_regions * (
               '<DataBlock type="Region" count="1" '
               f'width="{width}" height="1" size="{stride}" stride="{stride}" />')
           + '</DataBlock>'
           f'</DataFormat>{calib}<DataHistories><DataHistory><Origin><Experiment>'
           '<Devices><Cameras><Camera><ShutterTiming><ExposureTime type="Double">'
           f'{exposure_ms!r}</ExposureTime></ShutterTiming><ReadoutControl>'
           f'<RegionsOfInterest><CustomRegions><RegionOfInterest id="0" x="{roi_x}" '
           f'width="{width}" xBinning="1" y="0" height="1" yBinning="1" /></CustomRegions>'
           '</RegionsOfInterest></ReadoutControl></Camera></Cameras></Devices>'
           '</Experiment></Origin></DataHistory></DataHistories></SpeFormat>')
    path.write_bytes(bytes(head) + data + xml.encode())
    return path


def write_spe2(path: Path, frames: np.ndarray, coeffs: tuple[float, ...] | None, *,
               exposure_s: float = 1.0, frames_claim: int | None = None,
               xdim_claim: int | None = None) -> Path:
    """A WinSpec SPE 2.x file of uint16 spectra with a polynomial calibration (the
    pixel counted from 1, coefficients lowest order first)."""
    frames = np.atleast_2d(np.asarray(frames)).astype("<u2")
    n, width = frames.shape
    head = bytearray(4100)
    struct.pack_into("<f", head, 10, exposure_s)
    struct.pack_into("<H", head, 42, width if xdim_claim is None else xdim_claim)
    struct.pack_into("<h", head, 108, 3)
    struct.pack_into("<H", head, 656, 1)
    struct.pack_into("<i", head, 1446, n if frames_claim is None else frames_claim)
    struct.pack_into("<f", head, 1992, 2.5)
    if coeffs is not None:
        head[3101] = len(coeffs) - 1
        struct.pack_into("<6d", head, 3263, *(list(coeffs) + [0.0] * (6 - len(coeffs))))
    path.write_bytes(bytes(head) + frames.tobytes())
    return path
