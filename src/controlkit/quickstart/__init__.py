"""The embedded default: every stage on synthetic faces and a small pretrained base, on a CPU."""
