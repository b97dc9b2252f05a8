"""The robust headline on adversarial data (the scenarios of tests/unit/encoding/test_robust_headline.py).

Run from the repository root::

    python tests/benchmarks/adversarial_headline.py [--seeds 40]

Per scenario: the mean headline over seeds and the KS test of its permutation p-values
against the uniform distribution (what a valid test gives when the LLM adds nothing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_robust_headline import robust_fit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    args = parser.parse_args()
    print("scenario         mean headline  (sd)      KS p of the p-values  p < 0.05")
    with threadpool_limits(limits=1):
        for scenario in ("controls", "autocorrelation", "passage", "planted"):
            results = [robust_fit(scenario, seed) for seed in range(args.seeds)]
            headline = np.array([r.score for r in results])
            p_values = np.array([r.p_value for r in results])
            ks = stats.kstest(p_values, "uniform").pvalue
            print(
                f"{scenario:16s} {headline.mean():+.4f}       ({headline.std():.4f})  {ks:.3f}                 "
                f"{(p_values < 0.05).mean():.2f}"
            )


if __name__ == "__main__":
    main()
