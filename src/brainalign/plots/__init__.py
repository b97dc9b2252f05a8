"""brainalign.plots."""
