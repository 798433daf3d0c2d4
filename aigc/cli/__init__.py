"""The Typer CLI: parses arguments, calls the library, renders results."""
