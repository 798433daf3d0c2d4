"""`aigc serve`: an OpenAI-compatible HTTP server over aigc's engines and generators.

`scheduler` batches concurrent requests into one decode (needs torch only); `app` is the FastAPI
application and `running` serves it (both need the `serve` extra). Nothing here is imported by `aigc --help`.
"""
