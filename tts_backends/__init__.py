"""tts_backends package."""
