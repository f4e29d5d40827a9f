"""Network definitions: backbones, the CRAL attention heads, and the builder."""
