"""Base-model components: loading (Hub id or local folder) and small SD-shaped models for tests."""
