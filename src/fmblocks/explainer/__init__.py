"""The transformer explainer: a local web page that looks inside a model as it reads its input.

Views: the architecture, a tokenizer playground, embeddings, one query's attention step by step, the
attention of every layer and head, the feed-forward units, the logit lens, the prediction under the
sampling controls, and sampled continuations; for decoders, encoders (fill-mask), encoder-decoders
(cross-attention) and ViTs (MNIST digits). `analysis.py`, `detail.py`, `vision.py` and
`playground.py` turn a model and its input into plain JSON-ready data; `server.py` serves it with the
bundled page (no CDN, no analytics) on the loopback interface only; `default.py` loads the small
model that ships in `model/` (and builds it).
"""
