"""Setup files: the packaged ones are valid, and every bad one gets one line and exit 2."""

import pytest

from micropl.acquisition.config import load_config, packaged_config
from micropl.cli import main

BAD_CONFIGS = [
    ("camera: {em_gain: 5000}", "camera.em_gain: 5000 is above the maximum 1000"),
    ("sample: {density_per_um2: lots}",
     "sample.density_per_um2: expected a number, got 'lots'"),
    ("sample: {density_per_um2: -1}", "sample.density_per_um2: -1 must be above 0"),
    ("laser: {driver: nkt-super}", "laser: driver 'nkt-super' is not one of"),
    ("laser: {power_percent: 150}", "laser.power_percent: 150 is above the maximum 100"),
    ("camera: {bogus_key: 1}", "camera.bogus_key: unknown key"),
    ("mystery_section: {}", "mystery_section: unknown key"),
    ("clock: {mode: turbo}", "clock.mode: 'turbo' is not one of"),
    ("scanner: {start_um: [200, 0, 0]}", "start_um: x = 200.0 µm is outside 0.0–80.0 µm"),
    ("spectrograph: {grating: 9}", "grating: 9 is not installed"),
    ("camera: {read_mode: spiral}", "camera.read_mode: 'spiral' is not one of"),
    ("tagger: {dead_time_ns: fast}", "tagger.dead_time_ns: expected a number, got 'fast'"),
    ("sample: {seed: 1.5}", "sample.seed: expected a whole number"),
    ("safety: {apd_max_rate_cps: 0}", "safety.apd_max_rate_cps: 0 is below the minimum 1000"),
    ("spectrograph: {driver: acton}", "spectrograph.resource: required key is missing"),
    ("- just\n- a list", "a setup file must be a mapping"),
    ("camera: [1, 2", "not valid YAML"),
    ("camera: 3", "camera: expected a mapping of keys, got 3"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_gives_one_line_naming_the_key_and_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "setup.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert str(path) in lines[0] and "Traceback" not in captured.err


@pytest.mark.parametrize("name", ["simulated", "lab-example"])
def test_packaged_configs_are_valid(name):
    config, text = load_config(packaged_config(name))
    assert text.strip()
    assert config.clock.mode == "real"


def test_missing_config_file_is_one_line_exit_2(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such setup file" in capsys.readouterr().err


def test_check_config_json_describes_every_role(capsys):
    import json

    assert main(["check-config", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["role"] for row in out["instruments"]] == [
        "laser", "spectrograph", "camera", "tagger", "scanner"]
