import numpy as np
import pytest
import torch

from interp import InterpError, capture, greedy_generate
from interp.glitch.oracle import repeat_template
from interp.glitch.repair import (
    KeyNeurons,
    RepairPlan,
    activation_thresholds,
    key_neurons,
    neuron_activations,
    repair_hooks,
    repair_strengths,
)


def _acts():
    rng = np.random.default_rng(0)
    normal = rng.uniform(0, 0.5, size=(200, 6)).astype(np.float32)
    normal[:, 0] = 3.0
    normal[:2, 1] = 2.0
    glitch = np.full((10, 6), 0.25, np.float32)
    glitch[:, 0] = 2.9  # always-active neuron 0: normal 3.0, glitch 2.9 -> delta_up 0.1
    return normal, glitch


def test_key_neurons_use_the_papers_formulas():
    normal, glitch = _acts()
    plan = key_neurons({("mlp_gate", 3): normal}, {("mlp_gate", 3): glitch}, threshold=1.0, always_share=0.99)
    k = plan.neurons[0]
    assert (k.kind, k.layer) == ("mlp_gate", 3)
    assert k.always.tolist() == [0] and k.never.tolist() == [2, 3, 4, 5]
    assert plan.gaps["mlp_gate"]["delta_up"] == pytest.approx(0.1, abs=1e-5)
    assert plan.beta["mlp_gate"] == pytest.approx(0.5 + 25 * 0.1, abs=1e-4)  # clamp(0.5 + 25 d, 0, 3)
    ratio = float(np.mean(0.25 / normal[:, 2:].mean(0)))
    assert plan.gaps["mlp_gate"]["ratio_down"] == pytest.approx(ratio, rel=1e-5)
    assert plan.alpha["mlp_gate"] == pytest.approx(min(5.0, max(2.0, 2 * ratio)))
    rule = plan.rule_based(alpha=4.0, beta=1.5)
    assert rule.alpha == {"mlp_gate": 4.0} and rule.beta == {"mlp_gate": 1.5} and rule.neurons is plan.neurons
    with pytest.raises(InterpError):
        key_neurons({("mlp_gate", 3): normal}, {("mlp_gate", 4): glitch})


def test_strengths_clamp_and_thresholds_fit_the_scale():
    normal, glitch = _acts()
    glitch[:, 0] = -10.0  # huge gap -> beta clamps at 3
    plan = key_neurons({("mlp_data", 1): normal}, {("mlp_data", 1): glitch}, threshold=1.0)
    assert plan.beta["mlp_data"] == 3.0
    a, b, _ = repair_strengths({("mlp_data", 1): normal}, {("mlp_data", 1): normal}, plan.neurons)
    assert b["mlp_data"] == pytest.approx(0.5) and a["mlp_data"] == pytest.approx(2.0)  # equal means: ratio 1 -> 2
    thr = activation_thresholds({("mlp_gate", 0): np.full((4, 3), 2.0), ("mlp_data", 0): np.full((4, 3), -0.5)}, "rms")
    assert thr == {"mlp_gate": pytest.approx(2.0), "mlp_data": pytest.approx(0.5)}
    assert activation_thresholds({("mlp_gate", 0): np.full((4, 3), 2.0)}, "0.5rms") == {"mlp_gate": pytest.approx(1.0)}
    assert activation_thresholds({("mlp_gate", 0): np.ones((2, 2))}, 1.0) == {"mlp_gate": 1.0}
    with pytest.raises(InterpError):
        activation_thresholds({("mlp_gate", 0): np.ones((2, 2))}, "big")


def _plan(layer, kind="mlp_gate"):
    return RepairPlan([KeyNeurons(kind, layer, np.array([0, 1]), np.array([2, 3]))], {kind: 1.0}, {kind: 4.0}, {kind: 1.5})


def test_repair_changes_only_the_last_position(tiny):
    name = tiny.hook("mlp_gate", 1)
    prompts = ["abc", "abcdefg"]
    base = capture(tiny, prompts, hooks=[name], positions="all")
    seen = {}

    def spy(x, hook):
        seen.setdefault("x", []).append(x.detach().clone())
        return x

    with tiny.hooks(repair_hooks(tiny, _plan(1)) + [(name, spy)]):
        capture(tiny, prompts, hooks=[name], positions="all", batch_size=2)
    x = seen["x"][0]
    lens = [len(p) for p in base.acts[name]]
    order = sorted(range(2), key=lambda i: -lens[i])
    for r, i in enumerate(order):
        ref, got = base.acts[name][i], x[r, : lens[i]]
        assert torch.allclose(ref[:-1], got[:-1], atol=1e-5)
        a, b = ref[-1], got[-1]
        assert torch.allclose(a[4:], b[4:], atol=1e-5)
        for j in (0, 1):  # every always-active neuron: |x| + beta
            assert torch.isclose(b[j], a[j].abs() + 1.5, atol=1e-5)
        for j in (2, 3):  # never-active neurons that fire: x / alpha
            assert torch.isclose(b[j], a[j] / 4 if a[j] > 1 else a[j], atol=1e-5)


def test_repair_in_generation_and_prefix_skip(tiny_models):
    m = tiny_models["llama"]
    strong = RepairPlan([KeyNeurons("mlp_data", 2, np.arange(m.d_mlp), np.array([], int))], {"mlp_data": 1e9},
                        {"mlp_data": 2.0}, {"mlp_data": 50.0})
    prefix = m.encode("hello there")
    rows = [m.encode("ab", prepend_bos=False), m.encode("cd", prepend_bos=False)]
    plain = greedy_generate(m, rows, 4, prefix=prefix, stop_at_eos=False)
    with m.hooks(repair_hooks(m, strong)):
        shared = greedy_generate(m, rows, 4, prefix=prefix, stop_at_eos=False)
        unshared = greedy_generate(m, [prefix + r for r in rows], 4, stop_at_eos=False)
    assert shared == unshared
    assert shared != plain


def test_neuron_activations_read_gate_and_up_separately(tiny_models):
    m = tiny_models["llama"]
    acts = neuron_activations(m, [65, 66, 67], [0, 2], template=repeat_template(m, shots=()))
    assert set(acts) == {("mlp_gate", 0), ("mlp_gate", 2), ("mlp_data", 0), ("mlp_data", 2)}
    assert acts[("mlp_data", 2)].shape == (3, m.d_mlp)
    assert not np.allclose(acts[("mlp_gate", 2)], acts[("mlp_data", 2)])
    g = tiny_models["gpt2"]  # no up projection apart from the pre-activation
    assert set(neuron_activations(g, [65], [1], template=repeat_template(g, shots=()))) == {("mlp_gate", 1)}
