"""Repair of glitch tokens with key-neuron hooks on the gate and up projections: the paper's formulas vs the fixed rule.

Prints the repair rate and the damage to normal tokens on tokens of the stored ground truth, with
the key layers chosen from the per-layer distances of a labelled sample.

    python analyses/glitch_repair.py [--n-fit 400] [--n-eval 64]
"""

import argparse

import numpy as np

import interp
from interp.glitch.distance import key_layers, layer_distances
from interp.glitch.features import glitch_features
from interp.glitch.oracle import repeat_oracle, repeat_template
from interp.glitch.repair import key_neurons, neuron_activations, repair_hooks
from interp.glitch.scan import load_ground_truth

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n-fit", type=int, default=400)
    ap.add_argument("--n-eval", type=int, default=64)
    a = ap.parse_args()
    model = interp.load_model(a.model)
    tpl = repeat_template(model)
    truth, _ = load_ground_truth(a.model)
    rng = np.random.default_rng(0)
    glitch = rng.permutation(truth.loc[truth.cls == "glitch", "token_id"].to_numpy())
    normal = rng.permutation(truth.loc[truth.cls == "normal", "token_id"].to_numpy())
    fit_g, fit_n = glitch[: a.n_fit // 4], normal[: a.n_fit]
    feats = glitch_features(model, np.concatenate([fit_g, fit_n]).tolist(), template=tpl)
    layers = key_layers(layer_distances(feats, np.r_[np.ones(len(fit_g), bool), np.zeros(len(fit_n), bool)]))
    plan = key_neurons(neuron_activations(model, fit_n.tolist(), layers, template=tpl),
                       neuron_activations(model, fit_g.tolist(), layers, template=tpl))
    ev_g, ev_n = glitch[len(fit_g) : len(fit_g) + a.n_eval].tolist(), normal[len(fit_n) : len(fit_n) + a.n_eval].tolist()
    for name, p in (("GlitchProber (paper formulas)", plan), ("rule-based (alpha=4, beta=1.5)", plan.rule_based())):
        with model.hooks(repair_hooks(model, p)):
            t = repeat_oracle(model, ev_g + ev_n, template=tpl).table
        rep = (t.cls[: len(ev_g)] == "normal").mean()
        dmg = (t.cls[len(ev_g) :] == "glitch").mean()
        print(f"{name}: key layers {layers}, repair rate {rep:.3f}, normal damage {dmg:.3f}")
