"""Controllers: they act on the model (``qt/app_state.py``) and tell the view (``views/protocol.py``) what to show.

``app_controller.Controller`` composes them: models, runs, metrics, saving and batches each have their own.
"""
