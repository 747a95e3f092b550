"""Local scoring with the model card's yes/no-logit recipe. Everything here may import torch."""
