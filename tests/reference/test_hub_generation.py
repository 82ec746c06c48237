"""Generation from loaded GPT-2, Llama, Mistral and Qwen2 checkpoints equals transformers' `generate`.

Greedy: the same tokens, with and without our KV cache, against transformers with and without its cache.
Sampling: the same filtered distributions. Our `filter_logits(temperature, top_k, top_p)` probabilities
on the model's next-token logits equal those of transformers' warpers (TemperatureLogitsWarper,
TopKLogitsWarper, TopPLogitsWarper, in generate's order) on the same logits within 1e-6; and along a
trajectory that transformers' `generate(do_sample=True)` sampled, our filtered distribution at every step
equals the one it sampled from (its `scores`).
"""

from pathlib import Path

import pytest
import torch

from fmblocks.generation import filter_logits, generate
from fmblocks.models import from_pretrained

transformers = pytest.importorskip("transformers")

VOCAB, FAMILIES = 61, ["GPT2", "Llama", "Mistral", "Qwen2"]
SETTINGS = [dict(temperature=0.7), dict(temperature=1.0, top_k=7), dict(temperature=1.0, top_p=0.8),
            dict(temperature=1.3, top_k=12, top_p=0.9)]


def reference(family: str) -> torch.nn.Module:
    """A tiny random transformers model of `family` (Mistral's window shorter than the sequences)."""
    torch.manual_seed(0)
    if family == "GPT2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                         n_inner=48, bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(config)
    else:
        extra = {"sliding_window": 4} if family == "Mistral" else {}
        config = getattr(transformers, f"{family}Config")(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False, **extra)
        model = getattr(transformers, f"{family}ForCausalLM")(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # sharp enough that top-k / top-p cut real mass
    return model.eval()


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    ref = reference(request.param)
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return ref, from_pretrained(path)


def prompt(rows: int = 2, length: int = 5) -> torch.Tensor:
    return torch.randint(1, VOCAB, (rows, length), generator=torch.Generator().manual_seed(7))


def test_greedy_tokens_with_and_without_cache(pair: tuple) -> None:
    ref, ours = pair
    x = prompt()
    theirs = [ref.generate(x, max_new_tokens=10, do_sample=False, use_cache=cached, pad_token_id=0)
              for cached in (True, False)]
    assert torch.equal(theirs[0], theirs[1])
    for cached in (True, False):
        assert torch.equal(generate(ours, x, 10, temperature=0.0, use_cache=cached), theirs[0])


def warped(logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None,
           ) -> torch.Tensor:
    """transformers' warpers in generate's order (temperature, top-k, top-p) on (B, V) logits."""
    processors = [transformers.TemperatureLogitsWarper(temperature)]
    if top_k is not None:
        processors.append(transformers.TopKLogitsWarper(top_k))
    if top_p is not None:
        processors.append(transformers.TopPLogitsWarper(top_p))
    for processor in processors:
        logits = processor(None, logits)
    return logits


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_filtered_next_token_distributions_equal_the_warpers(pair: tuple, setting: dict) -> None:
    _, ours = pair
    with torch.no_grad():
        logits = ours(prompt(rows=4, length=9)).logits.reshape(-1, VOCAB)  # every position's next-token logits
    mine = filter_logits(logits, **setting).softmax(-1)
    theirs = warped(logits.clone(), **setting).softmax(-1)
    assert torch.equal(mine == 0, theirs == 0)  # the same tokens kept
    assert (mine - theirs).abs().max().item() < 1e-6
    if len(setting) > 1:
        assert (mine == 0).sum(-1).min() > 0  # the filters removed tokens in every row


@pytest.mark.parametrize("setting", SETTINGS[1:], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_the_distributions_generate_sampled_from(pair: tuple, setting: dict) -> None:
    ref, ours = pair
    x = prompt()
    options = {"top_k": 0, "top_p": 1.0, **setting}  # transformers' defaults (top_k=50) switched off unless set
    torch.manual_seed(3)
    out = ref.generate(x, max_new_tokens=8, do_sample=True, output_scores=True, return_dict_in_generate=True,
                       pad_token_id=0, **options)
    with torch.no_grad():
        logits = ours(out.sequences[:, :-1]).logits[:, x.shape[1] - 1 :]  # (B, 8, V): the logits of each step
    for step, scores in enumerate(out.scores):
        mine = filter_logits(logits[:, step], **setting).softmax(-1)
        assert (mine - scores.softmax(-1)).abs().max().item() < 1e-6, f"step {step}"
