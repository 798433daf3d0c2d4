"""The example plugins in plugins/ work through the same hooks an installed entry point uses."""

import importlib.util
from pathlib import Path

from aigc import plugins, templates

ROOT = Path(__file__).resolve().parents[2]


def load_plugin_module(package_dir: Path, module: str):
    spec = importlib.util.spec_from_file_location(module, package_dir / module / "__init__.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    return plugin


def test_social_templates_plugin_adds_the_tweet_template():
    plugin = load_plugin_module(ROOT / "plugins" / "aigc-social-templates", "aigc_social_templates")
    plugins.reset()
    plugins.get_plugin_manager().register(plugin, name="social-templates")
    try:
        tweet = templates.get_template("tweet")
        assert tweet.source == "social-templates"
        rendered = templates.render(tweet, {"input": "a new bakery"})
        assert rendered.messages[0]["role"] == "system"
        assert "a new bakery" in rendered.messages[-1]["content"]
        assert rendered.defaults["max_tokens"] == 80
    finally:
        plugins.reset()
