"""FastAPI ingress composing the model deployments into workflows."""
