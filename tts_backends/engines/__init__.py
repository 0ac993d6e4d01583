"""tts_backends/engines package."""
