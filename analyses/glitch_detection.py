"""GlitchProber detection vs baselines: per-layer distances, PCA scatter, sample-ratio sweep, time per method,
recall vs time per detector (activations vs token statistics), and how stable the oracle's verdicts are.

Writes the tables and figures of ``interp run glitch`` (figures/glitch/ by default).

    python analyses/glitch_detection.py [--quick] [--out figures]
"""

from pathlib import Path

import interp
from interp.analyses import run_analysis, script_parser

if __name__ == "__main__":
    ap = script_parser(__doc__, out="figures")
    a = ap.parse_args()
    run_analysis("glitch", interp.load_model(a.model), Path(a.out), a.quick, seed=0, fresh=False, png=True, overrides={})
