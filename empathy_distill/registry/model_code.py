"""The pyfunc model as code (MLflow's "models from code"): logged as this file, not as a pickle."""

import mlflow

from empathy_distill.registry.pyfunc import StudentChatModel

mlflow.models.set_model(StudentChatModel())
