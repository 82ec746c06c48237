"""`fmblocks fill-mask`, `convert`, and `--model` on `sample` / `embed`, on tiny random checkpoints in tmp_path.

Hugging Face directories are written by transformers itself (a few layers, random weights, a small
tokenizer); the answers are compared with transformers' own on the same directory.
"""

import json
import random
import re
from pathlib import Path

import pytest
import torch

from fmblocks.cli import main
from fmblocks.interop import convert, open_model
from fmblocks.models import fill_mask, from_pretrained, save_pretrained
from fmblocks.tokenizers.bio_protein import VOCAB as ESM_VOCAB

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "ran", "is", "big", "small", "red", "."]
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BertForMaskedLM directory with its WordPiece tokenizer."""
    path = tmp_path_factory.mktemp("bert")
    (path / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    transformers.BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    config = transformers.BertConfig(vocab_size=len(BERT_VOCAB), max_position_embeddings=24, **SMALL)
    randomize(transformers.BertForMaskedLM(config)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def esm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EsmForMaskedLM directory (rotary, token dropout) with ESM's vocab.txt tokenizer."""
    path = tmp_path_factory.mktemp("esm")
    (path / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n", encoding="utf-8")
    transformers.EsmTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    config = transformers.EsmConfig(vocab_size=33, max_position_embeddings=40, position_embedding_type="rotary",
                                    token_dropout=True, mask_token_id=32, pad_token_id=1, **SMALL)
    randomize(transformers.EsmForMaskedLM(config)).save_pretrained(path)
    return path


def byte_level_tokenizer(path: Path) -> None:
    """A GPT-2-layout tokenizer.json: the 256 bytes, three merges, then <|endoftext|> (260 ids)."""
    from fmblocks.tokenizers.pretokenize import BYTE_ORDER, byte_to_char

    vocab = {byte_to_char[b]: i for i, b in enumerate(BYTE_ORDER)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    hf = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = tokenizers.decoders.ByteLevel()
    hf.add_special_tokens(["<|endoftext|>"])
    hf.save(str(path / "tokenizer.json"))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpt2")
    byte_level_tokenizer(path)
    config = transformers.GPT2Config(vocab_size=260, n_positions=48, n_embd=32, n_layer=2, n_head=4, n_inner=48,
                                     bos_token_id=259, eos_token_id=259)
    randomize(transformers.GPT2LMHeadModel(config)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A protein masked-LM run written by `fmblocks train --objective mlm` (2 steps)."""
    folder = tmp_path_factory.mktemp("mlm")
    generator = random.Random(0)
    lines = []
    for i in range(12):
        lines += [f">p{i}", "".join(generator.choice("LAGVSERTIDPKQNFYMHWC") for _ in range(30))]
    (folder / "p.fasta").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = folder / "run"
    assert main(["train", "--preset", "bert-style", "--set", "n_layers=1", "d_model=32", "n_heads=2", "d_ff=64",
                 "max_len=40", "--data", str(folder / "p.fasta"), "--objective", "mlm", "--out", str(out),
                 "--steps", "2", "--batch-size", "4", "--log-every", "1", "--eval-every", "2", "--eval-batches", "1",
                 "--no-progress"]) == 0
    return out


def parse_fills(output: str) -> list[list[tuple[float, str]]]:
    """fill-mask's output as one list of (probability, token) per mask."""
    fills: list[list[tuple[float, str]]] = []
    for line in output.splitlines():
        if line.startswith("mask "):
            fills.append([])
        else:
            probability, token = line.split(maxsplit=1)
            fills[-1].append((float(probability), token))
    return fills


def hf_top(model: torch.nn.Module, ids: list[int], k: int) -> list[list[tuple[float, int]]]:
    with torch.no_grad():
        probs = model(torch.tensor([ids])).logits[0].softmax(-1)
    return [[(p, i) for p, i in zip(*[t.tolist() for t in probs[pos].topk(k)])] for pos in range(len(ids))]


# --- fill-mask ---------------------------------------------------------------------------------------------


def test_fill_mask_bert_equals_transformers(bert_dir: Path, capsys) -> None:
    text = "the cat [MASK] on the [MASK] ."
    assert main(["fill-mask", "--model", str(bert_dir), text, "--top-k", "3"]) == 0
    fills = parse_fills(capsys.readouterr().out)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(bert_dir))
    ids = hf_tokenizer(text)["input_ids"]
    ref = transformers.BertForMaskedLM.from_pretrained(bert_dir).eval()
    expected = [hf_top(ref, ids, 3)[i] for i, token in enumerate(ids) if token == hf_tokenizer.mask_token_id]
    assert len(fills) == 2
    for ours, theirs in zip(fills, expected):
        assert [token for _, token in ours] == [hf_tokenizer.convert_ids_to_tokens(i) for _, i in theirs]
        assert all(abs(p - q) < 5e-5 for (p, _), (q, _) in zip(ours, theirs))  # printed to 4 decimals


def test_fill_mask_esm2_equals_transformers(esm_dir: Path, capsys) -> None:
    model, tokenizer = open_model(esm_dir)
    assert tokenizer.kind == "protein"
    fills = fill_mask(model, tokenizer, "MKT<mask>LLAVA", top_k=4, add_special_tokens=True)
    ids = transformers.EsmTokenizer.from_pretrained(str(esm_dir))("MKT<mask>LLAVA")["input_ids"]
    assert [f.position for f in fills] == [ids.index(32)] == [4]  # <cls> M K T <mask>
    theirs = hf_top(transformers.EsmForMaskedLM.from_pretrained(esm_dir).eval(), ids, 4)[4]
    assert [c.id for c in fills[0].candidates] == [i for _, i in theirs]
    assert max(abs(c.probability - p) for c, (p, _) in zip(fills[0].candidates, theirs)) < 1e-5
    assert main(["fill-mask", "--model", str(esm_dir), "MKT[MASK]LLAVA", "--top-k", "4"]) == 0  # [MASK] is <mask>
    assert [t for _, t in parse_fills(capsys.readouterr().out)[0]] == [c.text for c in fills[0].candidates]


def test_fill_mask_on_a_masked_lm_run(mlm_run: Path, capsys) -> None:
    assert main(["fill-mask", "--model", str(mlm_run), "MKTAY<mask>LLAV[MASK]A"]) == 0
    fills = parse_fills(capsys.readouterr().out)
    assert [len(f) for f in fills] == [5, 5]
    for fill in fills:
        probabilities = [p for p, _ in fill]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001


def test_fill_mask_refuses_the_shipped_minilm_and_what_cannot_fill(gpt2_dir: Path, bert_dir: Path, capsys) -> None:
    from fmblocks.models.pretrained import minilm_path

    assert main(["fill-mask", "--model", str(minilm_path()), "a [MASK] day"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(BertModel) has no masked-LM head, so it cannot fill masks" in err
    assert main(["fill-mask", "--model", str(gpt2_dir), "a [MASK]"]) == 2
    assert "an encoder model is needed, this one is a decoder (GPT2LMHeadModel)" in capsys.readouterr().err
    assert main(["fill-mask", "--model", str(bert_dir), "the cat sat"]) == 2
    assert "the text has no mask token; write [MASK] where a token is missing" in capsys.readouterr().err


# --- sample and embed with --model -------------------------------------------------------------------------


def test_sample_from_a_hugging_face_gpt2_directory(gpt2_dir: Path, capsys) -> None:
    assert main(["sample", "--model", str(gpt2_dir), "--prompt", "the hat", "--max-new-tokens", "6",
                 "--temperature", "0"]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    _, tokenizer = open_model(gpt2_dir)
    prompt = tokenizer.encode("the hat")
    ref = transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    theirs = ref.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, pad_token_id=259)
    assert text == tokenizer.decode(theirs[0].tolist())


def test_embed_with_a_bert_directory_and_an_encoder_run(bert_dir: Path, mlm_run: Path, capsys) -> None:
    assert main(["embed", "--model", str(bert_dir), "the cat sat", "a dog ran on the mat"]) == 0
    ours = torch.tensor([[float(v) for v in line.split()] for line in capsys.readouterr().out.splitlines()])
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(bert_dir))
    batch = hf_tokenizer(["the cat sat", "a dog ran on the mat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = transformers.BertModel.from_pretrained(bert_dir).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert ours.shape == (2, 32) and (ours - expected).abs().max().item() < 1e-5
    assert main(["embed", "--model", str(mlm_run), "MKTAYIAK"]) == 0
    assert len(capsys.readouterr().out.split()) == 32


# --- convert -----------------------------------------------------------------------------------------------


def test_convert_gpt2_to_a_run_and_back(gpt2_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["convert", str(gpt2_dir), str(run)]) == 0
    wrote = "wrote an fmblocks run (checkpoint/, tokenizer.json) of the GPT2LMHeadModel model"
    assert capsys.readouterr().out.startswith(f"{wrote} -> {run}")
    greedy = ["--prompt", "the", "--max-new-tokens", "5", "--temperature", "0"]
    assert main(["sample", "--checkpoint", str(run), *greedy]) == 0
    from_run = capsys.readouterr().out
    assert main(["sample", "--model", str(gpt2_dir), *greedy]) == 0
    assert capsys.readouterr().out == from_run

    back = tmp_path / "hf"
    back.mkdir()  # an empty destination is fine
    assert main(["convert", str(run), str(back)]) == 0
    out = capsys.readouterr().out
    assert "wrote a Hugging Face GPT2LMHeadModel directory (config.json, model.safetensors, tokenizer.json)" in out
    text = "the hat ate that<|endoftext|>"
    exported = tokenizers.Tokenizer.from_file(str(back / "tokenizer.json")).encode(text).ids
    assert exported == tokenizers.Tokenizer.from_file(str(gpt2_dir / "tokenizer.json")).encode(text).ids
    config = json.loads((back / "config.json").read_text())
    assert (config["bos_token_id"], config["n_positions"]) == (259, 48)  # the original fields came back
    x = torch.randint(0, 260, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()(x).logits
        assert torch.equal(transformers.GPT2LMHeadModel.from_pretrained(back).eval()(x).logits, expected)


def test_convert_esm2_and_bert_model_to_runs(esm_dir: Path, tmp_path: Path, capsys) -> None:
    from fmblocks.models.pretrained import minilm_path

    assert main(["convert", str(esm_dir), str(tmp_path / "esm")]) == 0
    capsys.readouterr()
    for model in (esm_dir, tmp_path / "esm"):
        assert main(["fill-mask", "--model", str(model), "MKT<mask>LLAVA"]) == 0
    first, second = capsys.readouterr().out.split("mask 1")[1:]
    assert first == second and first.startswith(" (token 4)")  # the converted run is framed as HF: <cls> M K T
    assert main(["convert", str(minilm_path()), str(tmp_path / "minilm")]) == 0
    note = "note: this checkpoint has no masked-LM head: the run's head is freshly initialised"
    assert note in capsys.readouterr().out


def test_convert_a_trained_run_to_hugging_face(mlm_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["convert", str(mlm_run), str(tmp_path / "hf")]) == 0
    assert "wrote a Hugging Face BertForMaskedLM directory" in capsys.readouterr().out
    model, _ = open_model(mlm_run)
    x = torch.randint(4, 24, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = transformers.BertForMaskedLM.from_pretrained(tmp_path / "hf").eval()(x).logits
        assert (model(x).logits - theirs).abs().max().item() < 1e-5


def test_convert_refuses_a_non_empty_destination_and_leaves_nothing(gpt2_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["convert", str(gpt2_dir), str(tmp_path / "full")]) == 2
    assert "already exists and is not an empty directory" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "nowhere: not a model directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no partial directory left


def test_convert_bf16_checkpoint_casts_exactly(tmp_path: Path) -> None:
    config = transformers.GPT2Config(vocab_size=61, n_positions=16, n_embd=32, n_layer=1, n_head=4)
    randomize(transformers.GPT2LMHeadModel(config)).to(torch.bfloat16).save_pretrained(tmp_path / "hf")
    notes = convert(tmp_path / "hf", tmp_path / "run")
    assert "weights cast from bfloat16 to float32 (exactly; runs are float32)" in notes
    assert any("no tokenizer fmblocks can read" in note for note in notes)
    model, tokenizer = open_model(tmp_path / "run", need_tokenizer=False)
    original = from_pretrained(tmp_path / "hf")
    assert tokenizer is None and torch.equal(model.lm_head.weight, original.lm_head.weight.float())


def test_save_pretrained_writes_an_exportable_tokenizer(gpt2_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = open_model(gpt2_dir)
    assert save_pretrained(model, tmp_path / "plain")[-1] == "model.safetensors"
    assert save_pretrained(model, tmp_path / "full", tokenizer=tokenizer) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    reloaded, ours = open_model(tmp_path / "full")
    assert ours.encode("the hat<|endoftext|>", allowed_special="all") == tokenizer.encode(
        "the hat<|endoftext|>", allowed_special="all")
    assert re.search(r"Ġthe", (tmp_path / "full" / "tokenizer.json").read_text())


def test_explain_opens_a_hugging_face_directory(gpt2_dir: Path, bert_dir: Path) -> None:
    from fmblocks.commands.explain import open_explained
    from fmblocks.explainer.server import Explainer

    for path in (gpt2_dir, bert_dir):
        model, tokenizer = open_explained(path)
        reference, _ = open_model(path)
        ids = torch.tensor([tokenizer.encode("ab ba")])
        with torch.no_grad():
            torch.testing.assert_close(model(ids).logits, reference(ids).logits)
        assert Explainer(model, tokenizer, default_text="ab").info()["model"]["arch"] == model.config.arch


def test_explain_serves_a_hugging_face_gpt2_directory(gpt2_dir: Path) -> None:
    """`fmblocks explain --model DIR` on a transformers-written GPT-2: the page and every view's API answer,
    the numbers equal to transformers' own model on the same directory."""
    import threading
    import urllib.request

    from fmblocks.commands.explain import open_explained
    from fmblocks.explainer.server import Explainer, make_server

    model, tokenizer = open_explained(gpt2_dir)
    server = make_server(Explainer(model, tokenizer, default_text="the hat"), port=0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def call(path: str, body: dict | None = None) -> dict | str:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(server.url.rstrip("/") + path, data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read().decode()
        return payload if path == "/" else json.loads(payload)

    try:
        assert 'id="qkv"' in call("/") and 'id="sampling"' in call("/")
        info = call("/api/info")
        assert info["model"]["arch"] == "decoder" and info["vocab_size"] == 260 and info["default_text"] == "the hat"
        assert len(info["architecture"]["blocks"]) == 2
        text = "the hat sat"
        ids = tokenizer.encode(text)
        reference = transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir, attn_implementation="eager").eval()
        with torch.no_grad():
            theirs = reference(torch.tensor([ids]), output_attentions=True)
        data = call("/api/analyze", {"text": text, "top_k": 5})
        assert data["ids"] == ids and data["n_layers"] == 2 and data["n_heads"] == 4
        probs = theirs.logits[0, -1].softmax(-1)
        assert [n["id"] for n in data["next"][:3]] == probs.topk(3).indices.tolist()
        assert data["next"][0]["p"] == pytest.approx(float(probs.max()), abs=1e-5)
        for layer in range(2):
            torch.testing.assert_close(torch.tensor(data["attention"][layer]), theirs.attentions[layer][0],
                                       atol=1e-5, rtol=0)
        detail = call("/api/inspect", {"text": text, "layer": 1, "head": 3, "token": 2})
        torch.testing.assert_close(torch.tensor(detail["qkv"]["weights"]), theirs.attentions[1][0, 3, 2],
                                   atol=1e-5, rtol=0)
        assert detail["qkv"]["mask"] == [j <= 2 for j in range(len(ids))]
        generated = call("/api/generate", {"text": text, "max_new_tokens": 4, "temperature": 0})
        greedy = reference.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False, pad_token_id=259)
        assert generated["ids"] == greedy[0, len(ids):].tolist()
        pieces = call("/api/tokenize", {"text": text, "tokenizer": "model"})
        assert pieces["ids"] == ids
    finally:
        server.shutdown()
        server.server_close()
