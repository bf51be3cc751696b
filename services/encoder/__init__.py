"""Encoder service: `python -m services.encoder --model av-digits --modality audio --port 50061`."""
