"""Lv et al. 2024, layer-wise answer probability: where the answer appears, what the final attention and
the final MLP do to it (all facts and known facts, per relation).

    python analyses/recall_logit_lens.py --model smollm2-135m --out figures [--quick]
"""

import torch

from interp.recall import pipeline

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_logit_lens")
    with torch.no_grad():
        data = pipeline.step_capture(model, run, p)
        run.summary(**pipeline.step_logit_lens(model, run, p, data))
    print(run.finish())
