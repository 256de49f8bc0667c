import math

from interp.recall.claims import VERDICTS, claims_table

GOOD = {"late_peak_prob": 0.6, "prob_before_last_layers": 0.5, "logit_lens_final_prob": 0.4, "final_attention_change": -0.1,
        "final_mlp_change": -0.1, "final_heads_frac_attn_first_gt_half": 0.8, "final_heads_attn_first_mean": 0.7,
        "first_position_heads_freq_spearman": 0.3, "final_mlp_intercept_freq_spearman": 0.2, "final_mlp_freq_spearman": 0.2,
        "argument_ablation_drop": 0.4, "random_ablation_drop": 0.01, "mlp_alpha_argument_mean": 0.5, "mlp_alpha_other_mean": 0.1,
        "mlp_r2_cv_mean": 0.3, "mlp_best_task_auc": 0.9, "mlp_best_auc_layer": 20, "mlp_max_task_auc": 0.9,
        "mlp_task_auc_mean": 0.8, "mitigation_method": "heads", "mitigation_gain_test": 0.06, "mitigation_gain_independent": 0.07,
        "mitigation_acc_change_test": 0.01, "mitigation_acc_change_independent": 0.0, "mitigation_ppl_cost": 0.01}


def test_every_claim_gets_a_verdict():
    t = claims_table(GOOD)
    assert list(t.columns) == ["claim", "measured", "paper", "verdict"] and len(t) == 8
    assert set(t["verdict"]) == {"reproduced"}
    assert t["verdict"].isin(VERDICTS).all()


def test_thresholds_decide_the_verdict():
    v = dict(GOOD, late_peak_prob=0.41, prob_before_last_layers=0.1, logit_lens_final_prob=0.4,
             first_position_heads_freq_spearman=-0.3, final_mlp_intercept_freq_spearman=0.05,
             argument_ablation_drop=0.02, random_ablation_drop=0.03, mlp_alpha_argument_mean=0.0, mlp_alpha_other_mean=0.5,
             mlp_best_task_auc=0.45, mlp_max_task_auc=0.45, mitigation_gain_test=0.06, mitigation_ppl_cost=0.05)
    got = dict(zip(claims_table(v)["claim"], claims_table(v)["verdict"]))
    assert got["answer probability drops in the last layers"] == "opposite"
    assert got["first-position final heads write frequent tokens"] == "opposite"
    assert got["final MLP intercept aligned with frequency"] == "not reproduced"
    assert got["argument heads"] == "opposite"
    assert got["MLP activation"] == "opposite"
    assert got["function application"] == "opposite"
    assert got["mitigation gain"] == "not reproduced"  # perplexity cost above 2%


def test_missing_values_are_not_measurable():
    v = dict(GOOD, first_position_heads_freq_spearman=math.nan, mlp_alpha_argument_mean=math.nan)
    got = dict(zip(claims_table(v)["claim"], claims_table(v)["verdict"]))
    assert got["first-position final heads write frequent tokens"] == "not measurable"
    assert got["MLP activation"] == "not measurable"
    none = dict(GOOD, mitigation_method="none", mitigation_gain_test=0.0)
    assert claims_table(none)["verdict"].iloc[-1] == "not reproduced"


def test_mitigation_claim_names_the_perplexity_bound_where_measured():
    measured = dict(zip(claims_table(dict(GOOD, mitigation_ppl_cost_upper=0.0153))["claim"],
                        claims_table(dict(GOOD, mitigation_ppl_cost_upper=0.0153))["measured"]))
    assert measured["mitigation gain"].endswith("perplexity +1.00% (95% bound +1.53%)")
    plain = dict(zip(claims_table(GOOD)["claim"], claims_table(GOOD)["measured"]))
    assert plain["mitigation gain"].endswith("perplexity +1.00%")  # older summaries have no bound
