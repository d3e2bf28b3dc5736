"""ptycho: the lazily loaded model core of ptycho-sweep.

Importing this package (or :mod:`ptycho.config`, :mod:`ptycho.params`) imports no TensorFlow and
builds nothing. TensorFlow is imported by the submodules that need it (``tf_helper``,
``custom_layers``, ``model``, ``train_pinn``, ...) when they are imported.
"""

__version__ = "0.1.0"
