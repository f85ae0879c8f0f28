"""brandsentry: counterfeit screening for marketplaces.

Stages, imports flowing downstream only:
images → catalog → ingest → embed → index → cues → classify → score → review.
`portal` and `cli` are thin edges over them.
"""

__version__ = "0.1.0"
