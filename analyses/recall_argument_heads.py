"""Lv et al. 2024, argument-passing heads: score heatmap, attention-vs-attribution scatter, ablation check.

    python analyses/recall_argument_heads.py --model smollm2-135m --out figures [--quick]
"""

import torch

from interp.recall import pipeline

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_argument_heads")
    with torch.no_grad():
        data = pipeline.step_capture(model, run, p)
        _, summary = pipeline.step_argument_heads(model, run, p, data)
    run.summary(**summary)
    print(run.finish())
