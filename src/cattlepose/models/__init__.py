"""Networks and their outputs: backbones, PSA, the pose networks and their builder, the heatmap codec,
batch-norm fusion for inference, pretrained weights, and the size/compute description of a model."""
