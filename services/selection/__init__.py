"""Selection service: `python -m services.selection --encoder audio=127.0.0.1:50061 ...`."""
