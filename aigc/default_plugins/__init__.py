"""Built-in plugins: they register aigc's own generators, models and templates through the public hooks."""
