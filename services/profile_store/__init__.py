"""Profile store service: `python -m services.profile_store --db PATH_OR_URL --port 50051`."""
