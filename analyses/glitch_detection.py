"""GlitchProber detection vs baselines: per-layer distances, PCA scatter, sample-ratio sweep, time per method.

Writes the tables and figures of ``interp run glitch`` (figures/glitch/ by default).

    python analyses/glitch_detection.py [--quick] [--out figures]
"""

import argparse
from pathlib import Path

import interp
from interp.analyses import run_analysis

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default="figures")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    run_analysis("glitch", interp.load_model(a.model), Path(a.out), a.quick, seed=0, fresh=False, png=True, overrides={})
