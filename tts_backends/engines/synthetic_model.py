"""The torch modules of the synthetic engine: CosyVoice3's three stages with random weights.

NOT a speech model. The weights are seeded noise, so the audio is noise-like; only its
shape is realistic: an autoregressive speech-token LM (25 tokens per second of audio), a
token-to-mel stage (2x upsampling to 50 frames/s of 80 mel bins) and a vocoder
(transposed convolutions, hop 480, to 24 kHz). Every stage takes a batch, and the LM runs
one step at a time, so a scheduler can batch continuously: requests join and leave between
steps. The LM dominates the cost, as it does in CosyVoice3, and a batched step costs
little more than a single one because the step is bound by reading its weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TEXT_VOCAB = 512
# CosyVoice's speech tokenizer has 6,561 (3^8) tokens; one more is the LM's start token.
SPEECH_VOCAB = 6561
BOS = SPEECH_VOCAB
TOKEN_RATE = 25
MEL_RATE = 50
N_MELS = 80
HOP = 480
SAMPLE_RATE = 24_000
SECONDS_PER_CHAR = 0.08
# The spectrum bins a reference clip is summarised by when a voice is cloned.
SPEAKER_BINS = 64


# (text/token dim, LM hidden size). "small" keeps CPU tests quick; "0.5b" gives the LM
# CosyVoice3's parameter count (~0.5 B: GRU cell 3 x (2048 x 10240 + 10240^2) plus a
# 10240 x 6561 head), for GPU runs that need its real memory traffic per token.
SIZES: dict[str, tuple[int, int]] = {"small": (128, 512), "0.5b": (1024, 10240)}


def token_count(n_chars: int, speed: float) -> int:
    """Speech tokens for a text: ~0.08 s of audio per character, divided by `speed`."""
    # Rounded first so float noise (7 * 0.08 * 25 = 14.000000000000002) adds no token.
    return max(1, math.ceil(round(n_chars * SECONDS_PER_CHAR * TOKEN_RATE / speed, 6)))


class SyntheticTTSModel(nn.Module):
    def __init__(self, n_speakers: int, dim: int = 128, hidden: int = 512, mel_dim: int = 128):
        super().__init__()
        self.hidden = hidden
        # Stage 1: speech-token language model.
        self.char_emb = nn.Embedding(TEXT_VOCAB, dim)
        self.text_encoder = nn.GRU(dim, dim, batch_first=True)
        self.speaker_state = nn.Embedding(n_speakers, hidden)
        self.token_emb = nn.Embedding(SPEECH_VOCAB + 1, dim)
        self.lm_cell = nn.GRUCell(2 * dim, hidden)
        self.lm_head = nn.Linear(hidden, SPEECH_VOCAB)
        # Stage 2: tokens to mel frames (2x upsampling: 25 tokens/s -> 50 frames/s).
        self.mel_token_emb = nn.Embedding(SPEECH_VOCAB, mel_dim)
        self.mel_upsample = nn.ConvTranspose1d(mel_dim, mel_dim, 4, stride=2, padding=1)
        self.mel_out = nn.Conv1d(mel_dim, N_MELS, 5, padding=2)
        self.speaker_mel = nn.Embedding(n_speakers, N_MELS)
        # Cloned voices: a reference clip's spectrum, projected onto both speaker inputs.
        self.clone_state = nn.Linear(SPEAKER_BINS, hidden)
        self.clone_mel = nn.Linear(SPEAKER_BINS, N_MELS)
        # Stage 3: vocoder, 8 * 6 * 10 = 480 samples per mel frame.
        self.vocoder = nn.Sequential(
            nn.ConvTranspose1d(N_MELS, 32, 16, stride=8, padding=4),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose1d(32, 16, 12, stride=6, padding=3),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose1d(16, 1, 20, stride=10, padding=5),
            nn.Tanh(),
        )

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @torch.inference_mode()
    def speaker(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A built-in voice's conditioning: (LM initial state [H], mel offset [80])."""
        i = torch.tensor([index], device=self.device)
        return torch.tanh(self.speaker_state(i))[0], self.speaker_mel(i)[0]

    @torch.inference_mode()
    def clone_speaker(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A cloned voice's conditioning from its reference clip (mono float samples)."""
        spectrum = torch.fft.rfft(samples.to(self.device).float()).abs()
        bands = torch.stack([b.mean() for b in spectrum.tensor_split(SPEAKER_BINS)])
        features = torch.log1p(bands)
        features = (features - features.mean()) / (features.std() + 1e-6)
        return torch.tanh(self.clone_state(features)), self.clone_mel(features)

    @torch.inference_mode()
    def encode_text(self, text: str, n_tokens: int) -> torch.Tensor:
        """The text frontend: per-token text features [n_tokens, dim]."""
        chars = torch.tensor([[ord(c) % TEXT_VOCAB for c in text]], device=self.device)
        encoded, _ = self.text_encoder(self.char_emb(chars))
        # A monotonic alignment: token t attends to the character at the same relative spot.
        index = (torch.arange(n_tokens, device=self.device) * chars.shape[1]) // n_tokens
        return encoded[0, index]

    @torch.inference_mode()
    def lm_step(
        self, prev: torch.Tensor, aligned: torch.Tensor, state: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LM step for a batch: (tokens [B], new state [B, H]).

        Sampling inverts each row's CDF at that request's own uniform draw, so no random
        number is shared between the rows of a batch.
        """
        state = self.lm_cell(torch.cat([self.token_emb(prev), aligned], dim=1), state)
        cdf = torch.cumsum(torch.softmax(self.lm_head(state), dim=-1), dim=-1)
        tokens = torch.searchsorted(cdf, uniform.unsqueeze(1)).view(-1)
        return tokens.clamp_(max=SPEECH_VOCAB - 1), state

    @torch.inference_mode()
    def tokens_to_mel(self, tokens: torch.Tensor, speaker_mel: torch.Tensor) -> torch.Tensor:
        """Speech tokens [B, T] and mel offsets [B, 80] to mel frames [B, 80, 2T]."""
        x = self.mel_token_emb(tokens).transpose(1, 2)
        x = nn.functional.leaky_relu(self.mel_upsample(x), 0.1)
        return torch.tanh(self.mel_out(x)) + speaker_mel.unsqueeze(-1)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel frames [B, 80, F] to waveform [B, 480 F] at 24 kHz."""
        return self.vocoder(mel).squeeze(1)
