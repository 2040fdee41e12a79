"""The foundation every layer imports downward: labels and bins, image decoding, atomic I/O,
manifests and hashes, the allocator scope, the error root and the one issue schema.

Nothing here imports torch, FiftyOne or Click at module load, so `audits/` (and a CSV reader) stay
light; trainer/, audits/ and curate/ import from here and never from each other sideways.
"""
