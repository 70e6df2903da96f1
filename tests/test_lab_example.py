"""configs/lab-example.yaml: real drivers, validated without hardware; typos give one line + exit 2."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from micropl.acquisition.config import load_config, packaged_config
from micropl.cli import main

LAB = packaged_config("lab-example")


def run_cli(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return exc.code


def test_lab_example_validates_without_hardware(capsys):
    assert LAB.is_file()
    assert run_cli(["check-config", str(LAB), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is True and out["clock_mode"] == "real"
    drivers = {row["role"]: row["driver"] for row in out["instruments"]}
    assert drivers == {"laser": "pilas", "spectrograph": "acton", "camera": "andor",
                       "tagger": "swabian", "scanner": "pi_e727"}


def test_lab_example_real_settings():
    config, _ = load_config(LAB)
    assert config.spectrograph.resource.startswith("ASRL")
    assert config.spectrograph.inclusion_angle_deg == pytest.approx(15.15)  # SP-2300i
    assert config.scanner.resource.startswith("TCPIP::") and "::50000::SOCKET" in config.scanner.resource
    assert config.laser.max_power_percent < 100
    assert config.tagger.trigger_level_range_v == (0.0, 2.5)  # Time Tagger 20


def test_every_key_is_commented_with_a_unit():
    """Each `key: value` line carries a comment naming its unit (or '(no unit)')."""
    units = re.compile(r"#\s*(\(no unit\)|counts/s|°C|baud|s:|nm|mm|lines/mm|degrees|%|Hz|V|ps|"
                       r"µm|electrons/ADU|events)")
    data = yaml.safe_load(LAB.read_text(encoding="utf-8"))
    keys = {k for section in data.values() for k in section} | set(data)
    missing = []
    for line in LAB.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s+(\w+):\s*(\S.*)$", line)
        if m and m.group(1) in keys and not m.group(2).startswith("#"):
            if not units.search(line):
                missing.append(line.strip())
    assert missing == []


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("focal_length_mm: 300.0", "focal_lenght_mm: 300.0",
         r"spectrograph\.focal_lenght_mm: unknown key"),
        ("driver: acton ", "driver: actonn ",
         r"spectrograph: driver 'actonn' is not one of .*'acton'"),
        ('  resource: "ASRL/dev/ttyUSB0::INSTR"', "  # resource removed",
         r"spectrograph\.resource: required key is missing"),
        ("max_power_percent: 60.0", "max_power_percent: lots",
         r"laser\.max_power_percent: expected a number, got 'lots'"),
    ],
)
def test_a_typo_gives_one_line_and_exit_2(tmp_path, capsys, old, new, message):
    text = LAB.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "lab-typo.yaml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert run_cli(["check-config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    assert str(bad) in captured.err
    assert re.search(message, captured.err)
