"""brandsentry: counterfeit screening for marketplaces.

Stages, imports flowing downstream only:
images → database → catalog → ingest → image_batches → embed → index → index_sync → cues → features →
ledger → feedback → classify → bundle → registry → train → scoring → review (tests/test_structure.py holds
the order and checks it). `portal`, `cli`, `evaluation` and `synth` are edges over them.
"""

__version__ = "0.1.0"
