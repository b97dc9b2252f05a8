"""Column contracts of the encoding stage's tables that later stages read (no imports: the
analysis reads them without loading the encoding stack)."""

PAIR_TEST_COLUMNS = (
    "protocol",
    "dataset",
    "model",
    "base",
    "group_by",
    "n_groups",
    "n_neuroids",
    "score_model",
    "score_base",
    "r_model",
    "r_base",
    "mean_difference",
    "p_value",
    "p_min",
    "can_reach_alpha",
)
"""Columns of a paired test of an instruction-tuned model against its base, one row per file:
medians of each model's headline score (the protocol's per-neuroid score) and r over the
paired neuroids, the mean paired difference of the headline, and the sign-flip p-value over
``n_groups`` blocks with the smallest p-value those flips can give (``p_min``) and whether it is
below the study's alpha (``can_reach_alpha``)."""
