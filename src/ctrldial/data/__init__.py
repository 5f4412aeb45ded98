"""Data flow: corpus files → dialogues (corpus.py) → examples (examples.py) → token ids and masks (template.py)."""
