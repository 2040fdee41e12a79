"""Per-image audits: quality, skin tone, duplicates, mislabel scoring (no FiftyOne, no Click)."""
