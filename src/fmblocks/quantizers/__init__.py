"""Learned quantisers of continuous data into discrete codes, shared by tokenizers and models.

    vqvae   VectorQuantizer (nearest codebook vector, EMA updates, dead-code restarts, k-means init) and
            the VQ-VAE autoencoder around it, whose codes fmblocks.tokenizers.vq serves as image tokens

Layering: blocks < quantizers < tokenizers, models (neither tokenizers nor models import each other).
"""
