"""certify: sound precision certification for PyTorch models.

The public API (imported lazily so that ``import certifier`` stays light):

* :func:`certifier.pipeline.run_certify` - the main job;
* :func:`certifier.amp.apply_precision` - run a model under a certified mixed-precision config;
* :func:`certifier.scm.strict_decode` - strict N/D decoding with SCM thresholds.
"""

__version__ = "0.1.0"
