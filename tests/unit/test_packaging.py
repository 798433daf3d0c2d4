"""What pyproject.toml publishes in a wheel's metadata: the licence text it ships."""

from pathlib import Path

from aigc.config import parse_toml

ROOT = Path(__file__).resolve().parents[2]
PROJECT = parse_toml((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_apache_licence_the_metadata_names_is_in_the_checkout_and_shipped_as_a_licence_file():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"] and "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License to your work." in text  # the whole text
