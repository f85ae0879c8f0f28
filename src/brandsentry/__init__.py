"""brandsentry: counterfeit screening for marketplaces.

Stages, imports flowing downstream only:
images → catalog → ingest → image_batches → embed → index → cues → classify → scoring → review.
`portal` and `cli` are thin edges over them.
"""

__version__ = "0.1.0"
