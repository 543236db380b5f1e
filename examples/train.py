"""A small SageMaker-style training script: linear regression by gradient descent.

It uses only the container contract, as any SageMaker script does:
  - its training data from the `train` channel (SM_CHANNEL_TRAIN, i.e. /opt/ml/input/data/train),
  - its hyperparameters from /opt/ml/input/config/hyperparameters.json (values are strings),
  - it prints metric lines that MetricDefinitions regexes pick up,
  - it writes the model into /opt/ml/model (SM_MODEL_DIR), which becomes model.tar.gz.
"""

import csv
import glob
import json
import os
import sys

print("train.py: started", flush=True)

prefix = os.environ.get("SM_INPUT_DIR", "/opt/ml/input").rsplit("/input", 1)[0]
channel = os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
with open(os.path.join(prefix, "input/config/hyperparameters.json")) as f:
    hp = json.load(f)
epochs = int(hp.get("epochs", "50"))
lr = float(hp.get("learning-rate", "0.01"))

rows = []
for path in sorted(glob.glob(os.path.join(channel, "**", "*.csv"), recursive=True)):
    with open(path) as f:
        rows += [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
if not rows:
    with open(os.path.join(prefix, "output/failure"), "w") as f:
        f.write(f"no training data found in {channel}")
    sys.exit(1)
print(f"train.py: {len(rows)} rows from {channel}; epochs={epochs} lr={lr}", flush=True)

w, b = 0.0, 0.0
for epoch in range(1, epochs + 1):
    gw = sum((w * x + b - y) * x for x, y in rows) * 2 / len(rows)
    gb = sum((w * x + b - y) for x, y in rows) * 2 / len(rows)
    w, b = w - lr * gw, b - lr * gb
    if epoch % 10 == 0 or epoch == epochs:
        mse = sum((w * x + b - y) ** 2 for x, y in rows) / len(rows)
        print(f"epoch={epoch} train_mse={mse:.5f}", flush=True)

model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
with open(os.path.join(model_dir, "model.json"), "w") as f:
    json.dump({"w": w, "b": b}, f)
with open(os.path.join(prefix, "output/data", "summary.txt"), "w") as f:
    f.write(f"rows={len(rows)} w={w:.4f} b={b:.4f}\n")
print(f"train.py: model w={w:.4f} b={b:.4f} saved to {model_dir}", flush=True)
