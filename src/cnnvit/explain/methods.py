"""The names of the explanation methods (kept free of torch, for the command line)."""

CAM_METHODS = ("gradcam", "gradcam++")
# ViT-only methods (a CNN asked for one in a whole-run `cnnvit explain` uses Grad-CAM)
VIT_METHODS = ("rollout", "relevance", "vit-gradcam")
# attention-based: read each block's attention probabilities (no Grad-CAM target layer)
ATTENTION_METHODS = ("rollout", "relevance")
# auto: Grad-CAM for CNNs, VIT_DEFAULT for ViTs over a patch-token grid. Chosen on the
# quickstart run: relevance passes the model-randomisation check (rollout fails it) and has
# the lowest deletion AUC, well below a random map's (vit-gradcam is no better than random)
VIT_DEFAULT = "relevance"
METHODS = ("auto", *CAM_METHODS, *VIT_METHODS)
