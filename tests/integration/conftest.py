from conftest_integration import embedded_model  # noqa: F401 - session fixture: pull the model once
