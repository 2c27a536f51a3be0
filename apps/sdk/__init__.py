"""The lensos app SDK: ``App`` (apps/sdk/app.py) and manifests (apps/sdk/manifest.py)."""
