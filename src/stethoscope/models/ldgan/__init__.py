"""LDGAN, the log-mel branch of TLDiffGAN: latent diffusion-GAN reconstruction and TMixup."""

from .autoencoder import ConvAutoencoder, LatentNorm
from .diffusion import Diffusion, make_betas, timestep_embedding
from .model import LDGAN, LDGANConfig, moment_loss
from .networks import Denoiser, Discriminator, gradient_penalty
from .tmixup import AttentionPooling, TMixupBatch, attention_map, temporal_mask, tmixup

__all__ = [
    "LDGAN",
    "AttentionPooling",
    "ConvAutoencoder",
    "Denoiser",
    "Diffusion",
    "Discriminator",
    "LDGANConfig",
    "LatentNorm",
    "TMixupBatch",
    "attention_map",
    "gradient_penalty",
    "make_betas",
    "moment_loss",
    "temporal_mask",
    "timestep_embedding",
    "tmixup",
]
