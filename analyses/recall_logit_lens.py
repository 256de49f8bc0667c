"""Lv et al. 2024, layer-wise answer probability: where the answer appears, what the last layers take away.

    python analyses/recall_logit_lens.py --model smollm2-135m --out figures [--quick]
"""

import pandas as pd
import torch

from interp.recall import pipeline
from interp.recall.figures import logit_lens_figure
from interp.recall.logit_lens import final_drop, logit_lens_table

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_logit_lens")
    with torch.no_grad():
        zero, few, _, _, kz, kf = pipeline.prepare(model, run, p)
        table = pd.concat([logit_lens_table(model, zero, kz), logit_lens_table(model, few, kf)], ignore_index=True)
    run.table("logit_lens", table)
    run.table("logit_lens_drop", final_drop(table))
    run.figure("logit_lens", logit_lens_figure(table, model.spec))
    print(run.finish())
