"""The documentation stays true: the configuration reference and the README's examples."""

import re
from pathlib import Path

from micropl.acquisition.config import load_config
from micropl.acquisition.config_docs import render_markdown

REPO = Path(__file__).resolve().parents[1]


def test_configs_readme_is_generated_from_the_current_models():
    committed = (REPO / "configs" / "README.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), (
        "configs/README.md is stale: python -m micropl.acquisition.config_docs > configs/README.md")


def test_readme_configuration_example_is_a_valid_setup():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    config, _ = load_config(text=example)
    assert config.laser.driver == "pilas" and config.scanner.driver == "pi_e727"


def test_readme_shows_the_two_quick_start_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert re.findall(r"^make \w+$", quick, re.M) == ["make demo", "make test"]


def test_readme_script_examples_run(tmp_path, monkeypatch, capsys):
    """The first two Python examples of the README (survey, then map + g²) run as written."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    monkeypatch.chdir(tmp_path)
    for code in blocks[:2]:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert out.startswith("completed")
    assert re.search(r"g2\(0\) = 0\.\d+ ± 0\.0\d+", out)
    assert (tmp_path / "runs" / "my-survey.h5").exists()
