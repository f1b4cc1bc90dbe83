"""The tools that remake what ships: the quickstart's demo base and the small-face landmark regressor."""
