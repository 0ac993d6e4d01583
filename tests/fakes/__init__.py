"""Test fakes: honest stand-ins for what cannot run here (CUDA, CosyVoice3 weights)."""
