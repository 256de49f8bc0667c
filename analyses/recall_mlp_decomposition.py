"""Lv et al. 2024, MLP = activation (coefficients on centred head outputs) + function application (the
intercept): fit quality, fold stability of the intercept and its task-specificity AUC per layer.

    python analyses/recall_mlp_decomposition.py --model smollm2-135m --out figures [--quick]
"""

import torch

from interp.recall import pipeline

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_mlp_decomposition")
    with torch.no_grad():
        data = pipeline.step_capture(model, run, p)
        top, _ = pipeline.step_argument_heads(model, run, p, data)
        _, summary = pipeline.step_mlp_decomposition(model, run, p, data, top)
    run.summary(**summary)
    print(run.finish())
