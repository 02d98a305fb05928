"""The memory estimate: exact parameter counts, and within tolerance of real measurements."""

import json
from pathlib import Path

import pytest

from helpers import estimate

MEASURED = Path(__file__).resolve().parent.parent / "docs" / "memory_measurements.json"
TOLERANCE = 0.35  # measured peak RSS within ±35 % of the estimate
INTERNLM2_1_8B = dict(num_hidden_layers=24, hidden_size=2048, intermediate_size=8192, vocab_size=92544,
                      num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=False)


def test_parameter_count_matches_the_real_model(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert estimate.shape_from_config(tiny_model).params == sum(p.numel() for p in model.parameters())


def test_internlm2_chat_1_8b_has_1_89b_parameters():
    assert estimate.shape_from_config(INTERNLM2_1_8B).params == pytest.approx(1.89e9, rel=0.01)


def test_lora_parameter_count_matches_peft(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from xtuner.model.utils import find_all_linear_names

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=find_all_linear_names(model), task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert estimate._lora_params(estimate.shape_from_config(tiny_model), 8) == trainable


def test_qlora_is_smaller_than_lora_is_smaller_than_full():
    shape = estimate.shape_from_config(INTERNLM2_1_8B)
    totals = [estimate.estimate_memory(shape, estimate.Setup(method=m))["total"] for m in ("qlora", "lora", "full")]
    assert totals == sorted(totals) and totals[0] < 8 < totals[2]


def test_fit_table_and_advice_for_7b_on_24gb():
    shape = estimate.ModelShape(layers=32, hidden=4096, intermediate=14336, vocab=92544, heads=32, kv_heads=8,
                                tied_embeddings=False)
    full = estimate.Setup(method="full", max_length=2048)
    table = {row["card"]: row["fits"] for row in estimate.fit_table(estimate.estimate_memory(shape, full)["total"])}
    assert not any(table.values())
    advice = estimate.advice(shape, full, 24)
    assert advice[0].startswith("use QLoRA") and "bigger card" not in advice[-1]
    assert estimate.advice(shape, estimate.Setup(method="qlora", max_length=2048), 24) == []
    assert "bigger card" in estimate.advice(shape, full, 2)[-1]


def test_time_per_epoch():
    setup = estimate.Setup(max_length=1000, batch_size=2)
    assert estimate.time_per_epoch(10_000, setup, accumulative_counts=2, seconds_per_iter=6) == {
        "iterations": 5, "optimizer_steps": 3, "minutes": 0.5}


def test_estimate_within_tolerance_of_recorded_measurements():
    rows = json.loads(MEASURED.read_text())
    assert len(rows) >= 4
    for row in rows:
        setup = estimate.Setup(method=row["method"], lora_r=row["lora_r"], max_length=row["max_length"],
                               batch_size=row["batch_size"], device="cpu")
        shape = estimate.ModelShape(**row["shape"])
        estimated = estimate.estimate_memory(shape, setup)["total"]
        assert abs(row["measured_gb"] - estimated) <= TOLERANCE * estimated, (row, estimated)
