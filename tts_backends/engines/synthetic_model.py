"""The torch modules of the synthetic engine: CosyVoice3's three stages with random weights.

NOT a speech model. The weights are seeded noise, so the audio is noise-like; only its
shape is realistic: an autoregressive speech-token LM (25 tokens per second of audio), a
token-to-mel stage (2x upsampling to 50 frames/s of 80 mel bins) and a vocoder
(transposed convolutions, hop 480, to 24 kHz). Each stage is a method of its own so a
batching scheduler can run them stage by stage.
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


def token_count(n_chars: int, speed: float) -> int:
    """Speech tokens for a text: ~0.08 s of audio per character, divided by `speed`."""
    # Rounded first so float noise (7 * 0.08 * 25 = 14.000000000000002) adds no token.
    return max(1, math.ceil(round(n_chars * SECONDS_PER_CHAR * TOKEN_RATE / speed, 6)))


class SyntheticTTSModel(nn.Module):
    def __init__(self, n_speakers: int, dim: int = 64, hidden: int = 128, mel_dim: int = 128):
        super().__init__()
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
        # Stage 3: vocoder, 8 * 6 * 10 = 480 samples per mel frame.
        self.vocoder = nn.Sequential(
            nn.ConvTranspose1d(N_MELS, 64, 16, stride=8, padding=4),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose1d(64, 32, 12, stride=6, padding=3),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose1d(32, 1, 20, stride=10, padding=5),
            nn.Tanh(),
        )

    @torch.inference_mode()
    def generate_tokens(
        self, text: str, speaker: int, speed: float, generator: torch.Generator
    ) -> torch.Tensor:
        """Sample speech tokens autoregressively: LongTensor [1, T], T from `token_count`."""
        device = self.lm_head.weight.device
        chars = torch.tensor([[ord(c) % TEXT_VOCAB for c in text]], device=device)
        encoded, _ = self.text_encoder(self.char_emb(chars))
        n = token_count(len(text), speed)
        # A monotonic alignment: token t attends to the character at the same relative spot.
        aligned = encoded[0, (torch.arange(n, device=device) * chars.shape[1]) // n]
        state = torch.tanh(self.speaker_state(torch.tensor([speaker], device=device)))
        prev = torch.tensor([BOS], device=device)
        tokens = torch.empty(n, dtype=torch.long, device=device)
        for t in range(n):
            step_in = torch.cat([self.token_emb(prev), aligned[t : t + 1]], dim=1)
            state = self.lm_cell(step_in, state)
            probs = torch.softmax(self.lm_head(state), dim=-1)
            prev = torch.multinomial(probs, 1, generator=generator).view(1)
            tokens[t] = prev[0]
        return tokens.unsqueeze(0)

    @torch.inference_mode()
    def tokens_to_mel(self, tokens: torch.Tensor, speaker: int) -> torch.Tensor:
        """Speech tokens [B, T] to mel frames [B, 80, 2T]."""
        x = self.mel_token_emb(tokens).transpose(1, 2)
        x = nn.functional.leaky_relu(self.mel_upsample(x), 0.1)
        spk = self.speaker_mel(torch.tensor([speaker], device=tokens.device))
        return torch.tanh(self.mel_out(x)) + spk.unsqueeze(-1)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel frames [B, 80, F] to waveform [B, 480 F] at 24 kHz."""
        return self.vocoder(mel).squeeze(1)
