"""The model registry side: the pyfunc model, the promotion gate, the promotion history, lineage and retrain inputs.

Core code: it talks to MLflow, never to ZenML (steps and the CLI add ZenML's view).
"""
