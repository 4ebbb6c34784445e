"""Graph passes: channel groups, slimmable rewrite, extraction (installed as pareco_fx.passes)."""
