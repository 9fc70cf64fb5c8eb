"""Weight-perturbed copies of a trained model: w <- w * (1 + eps * N(0,1)), seed 0 (evidence for survival statistics)."""
import sys
import torch
from nnp.export import export_model
from nnp.train.trainer import load_checkpoint, model_from_checkpoint

ckpt, eps, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
model = model_from_checkpoint(load_checkpoint(ckpt))
torch.manual_seed(0)
with torch.no_grad():
    for p in model.parameters():
        p.mul_(1 + eps * torch.randn_like(p))
print(export_model(model, out, dtype="float32", provenance={"checkpoint": ckpt, "perturbation": eps}))
