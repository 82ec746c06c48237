"""The transformer explainer: a local web page that looks inside a decoder as it reads a text.

It shows the tokens, the token embeddings (2-D PCA), the attention weights of every layer and head,
the next-token probabilities with the sampling controls applied, and sampled continuations.
`analysis.py` turns (model, tokenizer, text) into plain JSON-ready data; `server.py` serves it with
the bundled page (no CDN, no analytics) on the loopback interface only.
"""
