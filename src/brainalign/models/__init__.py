"""Language models: fetching, loading, last-token activations and surprisal.

Stage functions (called by the workflow scripts and the CLI):

- :func:`brainalign.models.fetch.fetch_model` materialises a model and writes its manifest;
- :func:`brainalign.models.extraction.extract_activations` writes per-layer activations;
- :func:`brainalign.models.surprisal.compute_surprisal` writes per-unit surprisal;
- :func:`brainalign.models.extraction_options.expected_metadata` gives the facts that make an
  activation or surprisal file valid for a config (pass it to ``read_activations``).
"""
